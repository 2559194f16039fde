"""`livertumorseg evaluate`: case matching, outputs (CSV, JSON, plots) and user errors."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
from evaluate_helpers import write_evaluate_folders

from LiverTumorSegLib.cli import main
from LiverTumorSegLib.commands.evaluate import case_name
from LiverTumorSegLib.io import write_label_map, write_volume
from LiverTumorSegLib.phantom import make_phantom
from LiverTumorSegLib.volume import ImageGeometry


@pytest.mark.parametrize("name,expected", [
    ("segmentation-12.nii", "12"), ("volume-12.nii.gz", "12"), ("Case_01.nrrd", "case_01"),
    ("pred_7_seg.mha", "7"), ("liver_0000.nii.gz", "liver"), ("liver_0000_0000.nii.gz", "liver_0000"),
    ("liver_000_0000.nii.gz", "liver_000"), ("notes.txt", None), ("x.seg.nrrd", "x"),
    ("ct3slice_ct.nii.gz", "ct3slice"), ("ct3slice_liver_seg.nii.gz", "ct3slice"), ("Case1_Liver_Label.nrrd", "case1"),
    # LiTS numbers without leading zeros, as training's LiTS reader takes them (helper-30's audit: volume-01 and
    # segmentation-1 were 'without a reference'); other names keep theirs
    ("volume-01.nii", "1"), ("segmentation-007.nii.gz", "7"), ("test-volume-000.nii", "0"), ("pred_07.nii", "07")])
def test_case_name(name, expected):
    assert case_name(Path(name)) == expected


@pytest.mark.parametrize("pred_name,expected_first", [("{}_0000", "liver_0000"),  # segment's, named as the CT
                                                     ("{}", "liver")])  # nnU-Net's: its names can't tell
def test_nnunet_channel_suffix_is_removed_once_and_cases_still_pair(tmp_path, caplog, pred_name, expected_first):
    """nnU-Net's _0000 was removed repeatedly: the CT imagesTs/liver_0000_0000.nii.gz of case liver_0000 and
    segment's prediction of that name were case 'liver' in cases.csv. It is removed once; labelsTs/liver_0000.nii.gz
    (case name 'liver') still pairs with the prediction, and every case with its CT."""
    from LiverTumorSegLib.commands.evaluate import _other_case_names, match_cases, optional_inputs

    for folder in ("pred", "ref", "img"):
        (tmp_path / folder).mkdir()
    for case in ("liver_0000", "liver_0001", "liver_003"):
        (tmp_path / "ref" / f"{case}.nii.gz").write_bytes(b"")
        (tmp_path / "img" / f"{case}_0000.nii.gz").write_bytes(b"")
        (tmp_path / "pred" / f"{pred_name.format(case)}.nii.gz").write_bytes(b"")
    matched, only_pred, only_ref = match_cases(tmp_path / "pred", tmp_path / "ref")
    assert [name for name, _, _ in matched] == [expected_first, "liver_0001", "liver_003"]
    assert [ref.name for _, _, ref in matched] == ["liver_0000.nii.gz", "liver_0001.nii.gz", "liver_003.nii.gz"]
    assert only_pred == only_ref == []
    images = optional_inputs(str(tmp_path / "img"), [name for name, _, _ in matched], "--images",
                             _other_case_names(matched))
    assert [path.name for path in images.values()] == ["liver_0000_0000.nii.gz", "liver_0001_0000.nii.gz",
                                                       "liver_003_0000.nii.gz"]
    assert "no file" not in caplog.text
    single, _, _ = match_cases(tmp_path / "pred" / f"{pred_name.format('liver_0000')}.nii.gz",
                               tmp_path / "ref" / "liver_0000.nii.gz")
    assert [name for name, _, _ in single] == [expected_first]  # two files: named as two folders name them


def test_a_name_macos_wrote_decomposed_pairs_with_the_same_name_written_composed(tmp_path):
    """A reference label map from a Mac's archive ('cafe' + combining accent, NFD) and the prediction a case list
    named 'caf\u00e9' (NFC) were both listed unmatched: "prediction(s) without reference ['café']; reference(s)
    without prediction ['café']", the one case left out of every number."""
    from LiverTumorSegLib.commands.evaluate import match_cases

    for folder in ("pred", "ref"):
        (tmp_path / folder).mkdir()
    (tmp_path / "ref" / "cafe\u0301_seg.nii.gz").write_bytes(b"")
    (tmp_path / "pred" / "Caf\u00e9.nii.gz").write_bytes(b"")
    matched, only_pred, only_ref = match_cases(tmp_path / "pred", tmp_path / "ref")
    assert [(name, ref.name) for name, _, ref in matched] == [("caf\u00e9", "cafe\u0301_seg.nii.gz")]
    assert only_pred == only_ref == []


@pytest.fixture()
def dataset(tmp_path):
    """Three phantom cases: references in ref/, predictions (shifted in x by 0, 1, 2 voxels) in pred/,
    CTs in img/, tumor probabilities in prob/, plus one prediction without reference."""
    for sub in ("ref", "pred", "img", "prob"):
        (tmp_path / sub).mkdir()
    truth = {}
    for i in range(3):
        phantom = make_phantom(shape_zyx=(12, 40, 40), seed=i)
        geometry = phantom.ct.geometry
        pred = np.roll(phantom.labels, i, axis=2)
        write_label_map(tmp_path / "ref" / f"segmentation-{i}.nii.gz", phantom.labels, geometry)
        write_label_map(tmp_path / "pred" / f"{i}.nii.gz", pred, geometry)
        write_volume(tmp_path / "img" / f"volume-{i}.nii.gz", phantom.ct)
        prob = (pred == 2).astype(np.float32) * 0.7 + 0.1
        write_volume(tmp_path / "prob" / f"prob_{i}.nii.gz", phantom.ct.with_array(prob))
        truth[str(i)] = (pred, phantom.labels)
    write_label_map(tmp_path / "pred" / "orphan.nii.gz", pred, geometry)
    return tmp_path, truth


SUMMARY_KEY_IN_HELP = {"metrics": "mean/std/median per metric", "global_dice": "global Dice",
                       "global_dice_ci95": "global_dice_ci95", "bootstrap": "percentile bootstrap",
                       "lesion_detection": "lesion detection precision/recall",
                       "lesion_detection_by_size": "lesion_detection_by_size",
                       "lesion_segmentation_lits": "per-lesion LiTS scores", "tumor_burden": "tumor burden errors",
                       "volume_outside_ref_total_ml": "outside the reference liver", "settings": "settings",
                       "unmatched": "unmatched cases", "warnings": "warnings", "roc_pooled": "pooled ROC",
                       "lesion_froc": "lesion FROC", "n_cases": None}
"""What evaluate --help calls each key of summary.json (None: not worth a word)."""
PLOT_IN_HELP = {"boxplots.png": "box plots", "roc_tumor.png": "ROC curve", "froc_tumor.png": "lesion FROC curve",
                "overlay_best_0.png": "overlays of the best", "overlay_worst_2.png": "worst case"}


def assert_help_names_each_output(summary, plots):
    """evaluate --help's list of what summary.json and plots/ hold left out the lesion FROC (its key and its
    curve), the per-lesion LiTS scores, the mL outside the reference liver and the warnings, and named the ROC
    curve as if always drawn; each output of a run with --prob must now be named there (a new key must be given a
    name in SUMMARY_KEY_IN_HELP)."""
    from LiverTumorSegLib.commands import evaluate

    help_text = " ".join(evaluate.__doc__.split())
    assert set(summary) <= set(SUMMARY_KEY_IN_HELP), set(summary) - set(SUMMARY_KEY_IN_HELP)
    for key in summary:
        assert SUMMARY_KEY_IN_HELP[key] is None or SUMMARY_KEY_IN_HELP[key] in help_text, key
    for name in plots:
        assert PLOT_IN_HELP[name] in help_text, name


def test_evaluate_folders_writes_table_summary_and_plots(dataset, capsys, caplog):
    root, truth = dataset
    out = root / "out"
    code = main(["evaluate", "--pred", str(root / "pred"), "--ref", str(root / "ref"), "-o", str(out),
                 "--images", str(root / "img"), "--prob", str(root / "prob")])
    assert code == 0
    printed = capsys.readouterr()
    assert "evaluated 3 case(s)" in printed.out and "global Dice" in printed.out
    assert "orphan" in caplog.text   # the unmatched prediction is warned about
    with open(out / "cases.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["case"] for r in rows] == ["0", "1", "2"]
    header = list(rows[0])
    assert header[0] == "case"
    for column in ("dice_liver", "dice_tumor", "assd_liver_mm", "hd95_liver_mm", "roc_auc_tumor"):
        assert column in header
    assert float(rows[0]["dice_liver"]) == 1.0 and float(rows[2]["dice_liver"]) < float(rows[1]["dice_liver"])
    pred, ref = truth["2"]
    tp = np.count_nonzero((pred >= 1) & (ref >= 1))
    expected = 2 * tp / (np.count_nonzero(pred >= 1) + np.count_nonzero(ref >= 1))
    assert float(rows[2]["dice_liver"]) == pytest.approx(expected, abs=1e-12)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_cases"] == 3
    assert set(summary["metrics"]["dice_liver"]) >= {"mean", "std", "median", "n", "n_nan"}
    assert summary["unmatched"]["predictions_without_reference"] == ["orphan"]
    assert 0.0 < summary["global_dice"]["tumor"] <= 1.0
    assert 0.0 <= summary["lesion_detection"]["precision"] <= 1.0
    assert summary["roc_pooled"]["structure"] == "tumor" and 0.5 < summary["roc_pooled"]["auc"] <= 1.0
    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert plots == ["boxplots.png", "froc_tumor.png", "overlay_best_0.png", "overlay_worst_2.png", "roc_tumor.png"]
    # lesion FROC: every predicted lesion's mean tumor probability is 0.8 (0.1 + 0.7 on the predicted tumor), so one
    # operating point; its hits counted here by a plain loop over components
    from scipy import ndimage
    hit, n_ref, n_pred = 0, 0, 0
    for case in ("0", "1", "2"):
        pred, ref = truth[case]
        pred_ids, k_pred = ndimage.label(pred == 2, structure=np.ones((3, 3, 3)))
        ref_ids, k_ref = ndimage.label(ref == 2, structure=np.ones((3, 3, 3)))
        n_ref, n_pred = n_ref + k_ref, n_pred + k_pred
        found = set()
        for i in range(1, k_pred + 1):
            shared = np.bincount(ref_ids[(pred_ids == i) & (ref_ids > 0)], minlength=k_ref + 1)
            if shared.any():
                found.add(int(np.argmax(shared)))
        hit += len(found)
    froc = summary["lesion_froc"]
    assert (froc["n_cases"], froc["n_ref_lesions"], froc["n_pred_lesions"]) == (3, n_ref, n_pred) and n_ref > 0
    assert froc["points"]["threshold"][0] is None and froc["points"]["threshold"][1] == pytest.approx(0.8, abs=1e-6)
    assert froc["sensitivity_at_fp_per_case"]["8"] == pytest.approx(hit / n_ref)
    assert "lesion FROC" in printed.out
    assert_help_names_each_output(summary, plots)
    # a second run refuses to overwrite, then succeeds with --overwrite
    args = ["evaluate", "--pred", str(root / "pred"), "--ref", str(root / "ref"), "-o", str(out), "--no-plots"]
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0


def test_evaluate_single_files_without_surface(dataset, capsys):
    root, _ = dataset
    out = root / "single"
    code = main(["evaluate", "--pred", str(root / "pred" / "1.nii.gz"), "--ref",
                 str(root / "ref" / "segmentation-1.nii.gz"), "-o", str(out), "--no-surface", "--no-plots"])
    assert code == 0
    rows = list(csv.DictReader(open(out / "cases.csv", newline="")))
    assert len(rows) == 1 and rows[0]["case"] == "1" and "assd_liver_mm" not in rows[0]
    assert not (out / "plots").exists()


def test_evaluate_user_errors(dataset, tmp_path, capsys):
    root, truth = dataset
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["evaluate", "--pred", str(empty), "--ref", str(root / "ref"), "-o", str(tmp_path / "o1")]) == 2
    assert "No case name matches" in capsys.readouterr().err
    assert main(["evaluate", "--pred", str(root / "pred" / "0.nii.gz"), "--ref", str(root / "ref"),
                 "-o", str(tmp_path / "o2")]) == 2
    assert "both be files or both be folders" in capsys.readouterr().err
    # prediction on another grid -> LabelError naming the mismatch
    other = tmp_path / "other"
    other.mkdir()
    pred, _ = truth["0"]
    write_label_map(other / "0.nii.gz", pred, ImageGeometry(spacing=(1.0, 1.0, 1.0)))
    assert main(["evaluate", "--pred", str(other), "--ref", str(root / "ref"), "-o", str(tmp_path / "o3")]) == 2
    assert "does not match" in capsys.readouterr().err
    assert main(["evaluate", "--pred", str(root / "pred"), "--ref", str(root / "ref"), "-o", str(tmp_path / "o4"),
                 "--detection-iou", "1.5"]) == 2


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_a_written_probability_map_says_it_is_255_times_p(tmp_path, suffix):
    """segment --probabilities writes round(255 p). On a confident tumor-free case its largest value is 0 or 1;
    read back it was taken as a hard 0/1 map (probability 1.0), in evaluate and measure alike. The file now
    carries a tag in its header, and 1 reads as 1/255 in every output format."""
    from LiverTumorSegLib.io import read_volume, write_probability_map
    from LiverTumorSegLib.io.formats import PROBABILITY_255_CONTENT
    from LiverTumorSegLib.io.probability import probability_scores

    geometry = ImageGeometry(spacing=(0.8, 0.8, 2.5), origin=(5.0, -3.0, 40.0))
    values = np.zeros((3, 4, 5), np.uint8)
    values[1, 2, 3] = 1
    path = write_probability_map(tmp_path / f"p{suffix}", values, geometry)
    volume = read_volume(path)
    assert volume.meta.get("content") == PROBABILITY_255_CONTENT
    np.testing.assert_allclose(probability_scores(volume.array, path, volume.meta["content"]).max(), 1.0 / 255)
    plain = write_label_map(tmp_path / f"mask{suffix}", values, geometry)  # an untagged 0/1 map: a hard map
    assert "content" not in read_volume(plain).meta
    assert probability_scores(read_volume(plain).array, plain).max() == 1.0


def _pooled_roc_of_two_cases(tmp_path, dtype):
    """``evaluate --prob`` of case a (tumor at 200, a few missed tumor voxels at 1, liver at 2) and tumor-free case b
    (half of its liver at 1), maps of ``dtype`` (uint8: tagged as segment writes them; else plain volumes). Returns
    ``((ref_a, prob_a), (ref_b, prob_b), summary.json, the pooled AUC of both maps read as 255 x p)``."""
    from LiverTumorSegLib.metrics.roc import RocAccumulator

    geometry = ImageGeometry(spacing=(1.0, 1.0, 2.0))
    shape = (6, 24, 24)
    ref_a = np.ones(shape, np.uint8)
    ref_a[2:4, 8:14, 8:14] = 2
    prob_a = np.full(shape, 2, dtype)
    prob_a[2:4, 8:14, 8:14] = 200
    prob_a[2:4, 8:10, 8:10] = 1           # a few tumor voxels the model missed, just above the floor
    ref_b = np.ones(shape, np.uint8)
    prob_b = np.zeros(shape, dtype)
    prob_b[:, :, :12] = 1                  # half of the tumor-free liver at 1/255
    write_evaluate_folders(tmp_path, {"a": ref_a, "b": ref_b}, geometry, {"a": prob_a, "b": prob_b})
    expected = RocAccumulator()
    for ref, prob in ((ref_a, prob_a), (ref_b, prob_b)):
        expected.add(prob / 255.0, ref == 2)
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"), "--prob",
                 str(tmp_path / "prob"), "-o", str(tmp_path / "out"), "--no-surface", "--no-plots"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    return (ref_a, prob_a), (ref_b, prob_b), summary, expected.curve().auc


def test_pooled_roc_keeps_a_tumor_free_cases_255_scale(tmp_path, capsys):
    """A tumor-free case whose written map holds only 0 and 1 pushed its background above the other case's
    tumor in the pooled ROC (AUC 0.89 instead of 0.99 in the audit's example)."""
    from LiverTumorSegLib.metrics.roc import RocAccumulator

    (ref_a, prob_a), (ref_b, prob_b), summary, expected = _pooled_roc_of_two_cases(tmp_path, np.uint8)
    assert summary["roc_pooled"]["auc"] == pytest.approx(expected, abs=1e-9)
    misread = RocAccumulator()  # case b's 1 taken as probability 1.0, as before
    misread.add(prob_a / 255.0, ref_a == 2)
    misread.add(prob_b.astype(np.float32), ref_b == 2)
    assert summary["roc_pooled"]["auc"] > misread.curve().auc + 0.1


def test_an_untagged_0_1_map_takes_the_scale_of_the_sets_other_integer_maps(tmp_path, capsys, caplog):
    """Maps of another tool, 255 x p without segment's tag: a tumor-free case whose map holds only 0 and 1 was read
    on its own as probabilities 0 and 1, its background above the other case's tumor in the pooled ROC (0.799
    against 0.946 in the evaluate audit's example). Its scale now follows the set's other integer maps; a set of
    0/1 maps alone is still read as hard maps."""
    from LiverTumorSegLib.metrics.roc import RocAccumulator

    # untagged integers (plain int16 volumes), up to 200: 255 x p, and the tumor-free case's 0 and 1
    (ref_a, prob_a), (ref_b, prob_b), summary, expected = _pooled_roc_of_two_cases(tmp_path, np.int16)
    geometry = ImageGeometry(spacing=(1.0, 1.0, 2.0))
    assert summary["roc_pooled"]["auc"] == pytest.approx(expected, abs=1e-9)
    assert summary["roc_pooled"]["n_cases"] == 2
    assert "1 case(s) (b) hold only the integers 0 and 1" in summary["probability_scale"]
    assert "read so too (0 and 1/255)" in caplog.text
    # both maps 0/1 (hard maps): read as probabilities 0 and 1, without a note
    hard = tmp_path / "hard"
    hard.mkdir()
    write_evaluate_folders(hard, {"a": ref_a, "b": ref_b}, geometry,
                           {"a": (prob_a >= 100).astype(np.int16), "b": prob_b})
    assert main(["evaluate", "--pred", str(hard / "pred"), "--ref", str(hard / "ref"), "--prob",
                 str(hard / "prob"), "-o", str(hard / "out"), "--no-surface", "--no-plots"]) == 0
    summary = json.loads((hard / "out" / "summary.json").read_text())
    as_hard = RocAccumulator()
    as_hard.add((prob_a >= 100).astype(np.float32), ref_a == 2)
    as_hard.add(prob_b.astype(np.float32), ref_b == 2)
    assert summary["roc_pooled"]["auc"] == pytest.approx(as_hard.curve().auc, abs=1e-9)
    assert "probability_scale" not in summary


def test_a_float_map_of_0_and_1_stays_probabilities_beside_255_maps_and_an_all_zero_map_is_no_scale_question(
        tmp_path, caplog):
    """A map stored as floats holding only 0.0 and 1.0 (a hard map) was made integers by the reader and then read as
    0 and 1/255 beside segment's 255 x p maps: its lesions' FROC confidences 0.0039 instead of 1, a wrong pooled AUC
    (0.748 against 0.996 in the metrics audit's example), under a warning telling the user to store floats, as was
    done. An untagged all-zero map was named among the maps of unknown scale, though 0 is 0 in any scale."""
    from LiverTumorSegLib.metrics.roc import RocAccumulator

    geometry = ImageGeometry(spacing=(1.0, 1.0, 2.0))
    shape = (6, 24, 24)
    ref_a = np.ones(shape, np.uint8)
    ref_a[2:4, 8:14, 8:14] = 2
    prob_a = np.full(shape, 30, np.uint8)
    prob_a[2:4, 8:14, 8:14] = 200
    ref_b = ref_a.copy()
    prob_b = (ref_b == 2).astype(np.float32)  # a hard map, stored as floats
    prob_b[0, :3, :3] = 1.0  # and a false positive
    write_evaluate_folders(tmp_path, {"a": ref_a, "b": ref_b}, geometry, {"a": prob_a, "b": prob_b})
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"), "--prob",
                 str(tmp_path / "prob"), "-o", str(tmp_path / "out"), "--no-surface", "--no-plots"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    expected = RocAccumulator()
    expected.add(prob_a / 255.0, ref_a == 2)
    expected.add(prob_b, ref_b == 2)
    assert summary["roc_pooled"]["auc"] == pytest.approx(expected.curve().auc, abs=1e-9)
    assert "probability_scale" not in summary and "1/255" not in caplog.text
    zero = tmp_path / "zero"
    zero.mkdir()
    write_evaluate_folders(zero, {"a": ref_a, "b": np.ones(shape, np.uint8)}, geometry,
                           {"a": prob_a, "b": np.zeros(shape, np.int16)})
    assert main(["evaluate", "--pred", str(zero / "pred"), "--ref", str(zero / "ref"), "--prob", str(zero / "prob"),
                 "-o", str(zero / "out"), "--no-surface", "--no-plots"]) == 0
    assert "probability_scale" not in json.loads((zero / "out" / "summary.json").read_text())
    # whole floats above 1 (255 x p stored as float32) keep the integer path: read as 255ths, not as probabilities 255
    from LiverTumorSegLib.io.probability import read_probability_levels
    from LiverTumorSegLib.io.reading import read_volume

    from LiverTumorSegLib.volume import CTVolume

    write_volume(tmp_path / "p255.nii.gz", CTVolume(prob_a.astype(np.float32), geometry))
    reference = read_volume(tmp_path / "p255.nii.gz")
    levels, divisor = read_probability_levels(tmp_path / "p255.nii.gz", reference, "map")
    assert divisor == 255.0 and levels.max() == 200


def test_evaluate_prob_counts_each_map_once_for_its_auc_and_the_pooled_roc(tmp_path, monkeypatch):
    """evaluate --prob counted every uint8 map's levels twice, once for the case's AUC (evaluate_case's roc_auc) and
    once for the pooled bins (RocAccumulator.add): two passes over the map for the same counts. The numbers are
    those of a hand count: AUC = (pairs ranked right + half the tied ones) / (positives x negatives)."""
    from LiverTumorSegLib.metrics import roc

    geometry = ImageGeometry(spacing=(1.0, 1.0, 2.0))
    cases = {"a": ([2, 2, 1, 1, 1, 1, 1, 1], [255, 102, 102, 51, 0, 0, 0, 0]),  # tumor at 255 and 102
             "b": ([2, 1, 1, 1, 1, 1, 1, 1], [51, 102, 0, 0, 0, 0, 0, 0])}      # tumor at 51, liver at 102
    write_evaluate_folders(tmp_path, {case: np.array(labels, np.uint8).reshape(2, 2, 2)
                                      for case, (labels, _) in cases.items()}, geometry,
                           {case: np.array(levels, np.uint8).reshape(2, 2, 2) for case, (_, levels) in cases.items()})
    passes = []
    real_level_counts = roc._level_counts
    monkeypatch.setattr(roc, "_level_counts", lambda *a, **k: passes.append(1) or real_level_counts(*a, **k))
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"), "--prob",
                 str(tmp_path / "prob"), "-o", str(tmp_path / "out"), "--no-surface", "--no-plots"]) == 0
    assert len(passes) == 2, f"{len(passes)} counting passes over the maps of 2 cases"
    with open(tmp_path / "out" / "cases.csv", newline="") as handle:
        auc = {row["case"]: float(row["roc_auc_tumor"]) for row in csv.DictReader(handle)}
    # a: 255 above all 6 liver voxels, 102 above 5 and tied with 1; b: 51 above 6 zeros, below 102
    assert auc == pytest.approx({"a": 11.5 / 12, "b": 6 / 7}, abs=1e-12)
    pooled = json.loads((tmp_path / "out" / "summary.json").read_text())["roc_pooled"]
    # 3 tumor voxels (255, 102, 51) against 13 others (102, 51, 102 and ten 0): 13 + (11 + 0.5 + 0.5) + (10 + 0.5)
    assert pooled["auc"] == pytest.approx(35.5 / 39, abs=1e-12) and pooled["n_cases"] == 2
    assert pooled["thresholds"] == [None, 0.999, 0.4, 0.2, 0.0]  # the lower edges of the bins of 1.0, 0.4, 0.2, 0
    assert pooled["tpr"] == pytest.approx([0, 1 / 3, 2 / 3, 1, 1]) and pooled["fpr"] == pytest.approx(
        [0, 0, 2 / 13, 3 / 13, 1])


@pytest.mark.parametrize("stored", ["uint8", "float32"])
def test_evaluate_prob_needs_little_memory_beside_the_map(tmp_path, monkeypatch, stored):
    """evaluate --prob made a float32 copy of the map, sorted all its voxels for the per-case AUC (argsort, sorted
    copies) and binned float and int64 copies for the pooled ROC: about 19 bytes a voxel more than evaluate
    without --prob for segment's uint8 map and 80 for a float32 map (5.6 GiB for a 600-slice CT, a MemoryError
    for 900; here 11 and 81). Now the uint8 map is kept as read (uint8) and scored per level, a float map
    (4 bytes) is scored in pieces: the peak rises by the map, its reading, and a few MiB."""
    import tracemalloc

    from LiverTumorSegLib.metrics import roc

    monkeypatch.setattr(roc, "CHUNK_VOXELS", 1 << 14, raising=False)  # pieces small beside this map
    geometry = ImageGeometry(spacing=(0.8, 0.8, 2.0))
    shape = (64, 128, 128)  # 1 Mi voxels
    ref = np.zeros(shape, np.uint8)
    ref[8:56, 20:110, 20:110] = 1
    ref[14:40, 40:80, 50:90] = 2
    pred = np.roll(ref, 2, axis=2)
    rng = np.random.default_rng(31)
    probability = np.clip(rng.normal(0.2, 0.15, shape) + 0.6 * (ref == 2), 0, 1)
    stored_map = np.round(255 * probability).astype(np.uint8) if stored == "uint8" else probability.astype(np.float32)
    write_evaluate_folders(tmp_path, {"c1": ref}, geometry, {"c1": stored_map}, predictions={"c1": pred})

    def evaluate(*extra):
        assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"), "--no-plots",
                     "--no-progress", "--overwrite", "-o", str(tmp_path / "out")] + list(extra)) == 0

    def peak(*extra):
        tracemalloc.start()
        try:
            evaluate(*extra)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    evaluate("--prob", str(tmp_path / "prob"))  # imports and caches first: not this run's memory
    without = peak()
    extra = (peak("--prob", str(tmp_path / "prob")) - without) / ref.size
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["roc_pooled"]["auc"] > 0.9
    # the map (1 or 4 bytes a voxel) and the reader's one decoding copy of it, plus 1 byte of slack; the peak
    # without --prob is itself lower since label maps are read as uint8, so the map's read sets the peak now
    bound = {"uint8": 3, "float32": 9}[stored]
    assert extra < bound, f"evaluate --prob allocated {extra:.1f} bytes a voxel more than without"


def test_probability_scores_scaling_and_range_errors():
    from LiverTumorSegLib.commands import evaluate
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.io.probability import probability_scores

    assert not hasattr(evaluate, "probability_scores")  # the library's, in io.probability; the command reads levels

    np.testing.assert_allclose(probability_scores(np.array([0, 51, 255], np.uint8), "p"), [0.0, 0.2, 1.0])
    np.testing.assert_allclose(probability_scores(np.array([0, 1], np.uint8), "p"), [0.0, 1.0])  # binary map
    np.testing.assert_allclose(probability_scores(np.array([0.25, 0.5], np.float32), "p"), [0.25, 0.5])
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        probability_scores(np.array([-3.0, 4.0], np.float32), "logits.nii.gz")
    with pytest.raises(InputError, match="0..255"):
        probability_scores(np.array([0, 1000], np.int16), "p")


def test_prob_without_reference_tumor_warns_and_failed_read_leaves_no_folder(tmp_path, capsys, caplog):
    phantom = make_phantom(shape_zyx=(8, 24, 24), lesions=[], seed=0)
    geometry = phantom.ct.geometry
    write_label_map(tmp_path / "ref.nii.gz", phantom.labels, geometry)
    write_label_map(tmp_path / "pred.nii.gz", phantom.labels, geometry)
    write_volume(tmp_path / "prob.nii.gz", phantom.ct.with_array(np.full(phantom.labels.shape, 0.25, np.float32)))
    code = main(["evaluate", "--pred", str(tmp_path / "pred.nii.gz"), "--ref", str(tmp_path / "ref.nii.gz"),
                 "-o", str(tmp_path / "out"), "--prob", str(tmp_path / "prob.nii.gz")])
    assert code == 0
    assert "warning: no ROC curve" in caplog.text and "pooled ROC AUC (tumor voxels): n/a" in capsys.readouterr().out
    assert not list((tmp_path / "out" / "plots").glob("roc_*.png"))
    # logits instead of probabilities: one-line error, and no output folder left behind
    write_volume(tmp_path / "logits.nii.gz", phantom.ct.with_array(np.full(phantom.labels.shape, 3.5, np.float32)))
    code = main(["evaluate", "--pred", str(tmp_path / "pred.nii.gz"), "--ref", str(tmp_path / "ref.nii.gz"),
                 "-o", str(tmp_path / "out2"), "--prob", str(tmp_path / "logits.nii.gz")])
    err = capsys.readouterr().err
    assert code == 2 and "[0, 1]" in err
    assert not (tmp_path / "out2").exists()
    # a probability map on another grid is named as such, with what differs (it was called the "prediction")
    shifted = phantom.ct.with_array(np.full(phantom.labels.shape, 0.25, np.float32))
    shifted.geometry = type(geometry)(spacing=geometry.spacing, origin=tuple(np.add(geometry.origin, (4.0, 0, 0))),
                                      direction=geometry.direction)
    write_volume(tmp_path / "prob_shifted.nii.gz", shifted)
    code = main(["evaluate", "--pred", str(tmp_path / "pred.nii.gz"), "--ref", str(tmp_path / "ref.nii.gz"),
                 "-o", str(tmp_path / "out3"), "--prob", str(tmp_path / "prob_shifted.nii.gz")])
    err = capsys.readouterr().err
    assert code == 2 and "probability map" in err and "origin (LPS)" in err and "prediction and reference" not in err
    assert not (tmp_path / "out3").exists()


def test_a_partly_nan_probability_map_is_refused_by_its_nan_count():
    """It said 'holds values nan..nan; probabilities must lie in [0, 1]' (min/max of an array with NaN)."""
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.io.probability import probability_scores

    values = np.full((2, 3, 4), 0.25, np.float32)
    values[0, 1, 2] = np.nan
    values[1, 2, 3] = np.inf
    with pytest.raises(InputError, match="holds 2 NaN/Inf voxel\\(s\\) of 24"):
        probability_scores(values, "p.nii.gz")


def test_a_case_name_in_chinese_draws_its_overlay_without_a_warning_per_glyph(tmp_path):
    """evaluate with CJK case names printed matplotlib's 'Glyph ... missing from font' UserWarnings on stderr."""
    import warnings

    from LiverTumorSegLib.metrics.report import plot_case_overlay

    labels = np.zeros((3, 16, 16), np.uint8)
    labels[1, 4:12, 4:12] = 1
    labels[1, 6:9, 6:9] = 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plot_case_overlay(labels, labels, tmp_path / "o.png", title="病例 3")
    assert (tmp_path / "o.png").is_file()
    assert not [w for w in caught if "Glyph" in str(w.message)]


def test_plots_keep_the_callers_pyplot_backend_and_figures(tmp_path):
    """The plots called ``matplotlib.use("Agg")``: a notebook's (inline) or a Qt session's pyplot was switched to
    Agg by an evaluation, and its own ``plt.show()`` then showed nothing."""
    import matplotlib
    import matplotlib.pyplot as plt

    from LiverTumorSegLib.metrics.report import plot_case_overlay, plot_metric_boxplots, plot_roc_curve
    from LiverTumorSegLib.metrics.roc import roc_curve

    before = matplotlib.get_backend()
    plt.switch_backend("svg")  # the caller's own backend (not Agg)
    try:
        own = plt.figure()
        labels = np.zeros((3, 10, 10), np.uint8)
        labels[1, 2:8, 2:8] = 1
        rows = [{"case": "a", "dice_liver": 0.9}, {"case": "b", "dice_liver": 0.8}]
        assert plot_metric_boxplots(rows, tmp_path / "box.png").is_file()
        assert plot_roc_curve(roc_curve(np.arange(10) / 10.0, np.arange(10) > 4), tmp_path / "roc.png").is_file()
        assert plot_case_overlay(labels, labels, tmp_path / "o.png").is_file()
        assert matplotlib.get_backend() == "svg"
        assert plt.get_fignums() == [own.number]  # none of the plots' figures left open in pyplot
    finally:
        plt.close("all")
        plt.switch_backend(before)
