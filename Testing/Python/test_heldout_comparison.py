"""scripts/heldout_comparison.py: issue 11's table for several models from `segment` + `evaluate`, a failed case
counted as a failure, built-in models from git history only with their pinned weights, nothing replaced without
--overwrite."""
import contextlib
import csv
import hashlib
import json
import re
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
from script_helpers import load_script

torch = pytest.importorskip("torch")

from LiverTumorSegLib import cli  # noqa: E402
from LiverTumorSegLib.errors import InputError  # noqa: E402
from LiverTumorSegLib.io import read_label_map, write_label_map, write_volume  # noqa: E402
from LiverTumorSegLib.phantom import PhantomLesion, make_phantom  # noqa: E402

from inference_helpers import tiny_unet_package  # noqa: E402

comparison = load_script("scripts/heldout_comparison.py", "heldout_comparison")


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    np.random.seed(0)
    torch.set_num_threads(1)


def in_process(calls):
    """A runner that runs the CLI in this process and records each argv."""
    def run(argv):
        calls.append(list(argv))
        return cli.main([str(a) for a in argv])
    return run


def write_cases(root, count=2, damaged_ct=False):
    """``count`` phantom CTs in root/cts and their label maps in root/labels (a tumor each); with ``damaged_ct``
    one more label map whose CT file is damaged (a case segment fails on, so it has no prediction)."""
    (root / "cts").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(count + int(damaged_ct)):
        lesion = PhantomLesion(center_zyx=(5.0, 16.0, 14.0), radius_mm=5.0 + i, hu=15.0)
        ph = make_phantom((12, 40, 44), (2.0, 2.0, 4.0), lesions=[lesion], noise_hu=0.0)
        if i < count:
            write_volume(root / "cts" / f"case{i}.nii.gz", ph.ct)
        else:
            (root / "cts" / f"case{i}.nii.gz").write_bytes(b"not a CT")
        write_label_map(root / "labels" / f"case{i}.nii.gz", ph.labels, ph.ct.geometry)
    return root / "cts", root / "labels"


def test_each_column_is_that_model_s_evaluate_summary_and_a_missing_case_is_a_failure(tmp_path):
    cts, labels = write_cases(tmp_path, count=2, damaged_ct=True)
    a = tiny_unet_package(tmp_path, name="a.safetensors").path
    b = tiny_unet_package(tmp_path, context_slices=1, name="b.safetensors").path
    calls = []
    out = tmp_path / "out"
    code = comparison.main([str(cts), "--ref", str(labels), "-o", str(out), "--models", "",
                            "--model", f"a={a}", "--model", f"b={b}", "--device", "cpu"], runner=in_process(calls))
    assert code == 0
    assert [c[0] for c in calls] == ["segment", "evaluate", "segment", "evaluate"]
    assert calls[0][calls[0].index("--model") + 1] == str(a)
    saved = json.loads((out / "comparison.json").read_text())
    assert list(saved["models"]) == ["a", "b"]
    from LiverTumorSegLib.package import load_model_package

    table = (out / "comparison.md").read_text()
    for name, package in (("a", a), ("b", b)):  # which weights made which numbers (the audit: named nowhere)
        sha = load_model_package(package).sha256
        assert saved["models"][name]["weights_sha256"] == sha and f"{name} {sha}" in table
    for name in ("a", "b"):
        row = saved["models"][name]
        summary = json.loads((out / name / "eval" / "summary.json").read_text())
        assert row["cases_evaluated"] == summary["n_cases"] == 2
        assert row["dice_liver_mean"] == pytest.approx(summary["metrics"]["dice_liver"]["mean"])
        assert row["dice_liver_worst"] == pytest.approx(summary["metrics"]["dice_liver"]["min"])
        assert row["dice_tumor_mean"] == pytest.approx(summary["metrics"]["dice_tumor"]["mean"])
        assert row["false_lesions"] == summary["lesion_detection"]["pred_no_overlap"]
        assert row["liver_outside_ml"] == pytest.approx(summary["volume_outside_ref_total_ml"]["liver"])
        # the case segment failed on: outside the numbers, named, and never a pass
        assert row["cases_without_prediction"] == ["case2"] and row["segment_failed_cases"] == ["case2"]
        assert row["meets_targets"] is False
    with (out / "per_case.csv").open(newline="") as handle:
        per_case = list(csv.DictReader(handle))
    assert [r["case"] for r in per_case] == ["case0", "case1", "case2"]
    assert per_case[2]["a_dice_liver"] == "" and per_case[0]["b_dice_liver"] != ""
    # what each case is like, from its CT and reference (the damaged CT's case: empty cells, named on stderr)
    reference = read_label_map(labels / "case0.nii.gz").array  # (z, y, x), 2 x 2 x 4 mm voxels, canonical already
    liver_slices = np.nonzero((reference >= 1).any(axis=(1, 2)))[0]
    assert {k: per_case[0][k] for k in comparison.CASE_DESCRIPTORS} == {
        "ct_pixel_mm": "2 x 2", "ct_slice_mm": "4", "ct_slices": "12",
        "scan_above_liver_mm": f"{(11 - liver_slices[-1]) * 4}", "scan_below_liver_mm": f"{liver_slices[0] * 4}",
        "ref_liver_ml": f"{np.count_nonzero(reference >= 1) * 0.016:.1f}", "ref_liver_mean_hu": "60",
        "ref_tumor_ml": f"{np.count_nonzero(reference == 2) * 0.016:.1f}", "ref_tumor_vs_liver_hu": "-45",
        "ref_lesions_brighter": "0 of 1"}  # the phantom's lesion: 15 HU in a 60 HU liver
    assert float(per_case[0]["ref_tumor_ml"]) > 0 and per_case[0]["scan_above_liver_mm"] != ""
    assert all(per_case[2][k] == "" for k in comparison.CASE_DESCRIPTORS)
    assert saved["cases"]["case1"]["ref_liver_mean_hu"] == "60" and saved["cases"]["case2"]["ct_slices"] == ""
    table = (out / "comparison.md").read_text()
    assert table.splitlines()[0] == "| | a | b | target |"
    assert "| reference cases without a prediction (failures, not in the numbers above) | 1 (case2) (misses) | " \
        "1 (case2) (misses) | 0 |" in table
    # b paired with a over the two cases both predicted (case2, which neither did, left out and named), and each
    # liver Dice mean's interval as evaluate's summary.json gives it
    paired = saved["models"]["b"]["paired_vs_first"]
    assert paired["first"] == "a" and paired["dice_liver"]["n"] == 2 and paired["dice_liver"]["cases_left_out"] == [
        "case2"]
    per_case_difference = [float(r["b_dice_liver"]) - float(r["a_dice_liver"]) for r in per_case[:2]]
    assert paired["dice_liver"]["mean_difference"] == pytest.approx(sum(per_case_difference) / 2, abs=1e-12)
    assert "paired_vs_first" not in saved["models"]["a"]
    summary = json.loads((out / "a" / "eval" / "summary.json").read_text())["metrics"]["dice_liver"]
    assert saved["models"]["a"]["dice_liver_ci95_low"] == summary["ci95_low"] is not None


def test_a_rerun_keeps_the_predictions_and_replaces_the_evaluation_only_with_overwrite(tmp_path):
    cts, labels = write_cases(tmp_path, count=1)
    a = tiny_unet_package(tmp_path).path
    out = tmp_path / "out"
    argv = [str(cts), "--ref", str(labels), "-o", str(out), "--models", "", "--model", f"a={a}", "--device", "cpu"]
    assert comparison.main(argv, runner=in_process([])) == 0
    before = (out / "comparison.json").read_bytes()
    label_map = out / "a" / "pred" / "case0.nii.gz"
    written = label_map.stat().st_mtime_ns
    # the same command again: segment resumes (nothing to do), evaluate's results of the same inputs are kept
    calls = []
    assert comparison.main(argv, runner=in_process(calls)) == 0
    assert [c[0] for c in calls] == ["segment"] and (out / "comparison.json").read_bytes() == before
    # an evaluation this script did not write (or one changed since) is replaced only with --overwrite, as is a
    # comparison of another command
    summary = out / "a" / "eval" / "summary.json"
    summary.write_text(summary.read_text().replace('"n_cases": 1', '"n_cases": 1 '))
    with pytest.raises(InputError, match=r"eval holds an evaluation this script did not write.*--overwrite"):
        comparison.main(argv, runner=in_process(calls))
    with pytest.raises(InputError, match=r"comparison.md exists \(a comparison of other models.*--overwrite"):
        comparison.main(argv + ["--label-map", '{"1": 1, "2": 2}'], runner=in_process(calls))
    assert [c[0] for c in calls] == ["segment"] and (out / "comparison.json").read_bytes() == before
    calls.clear()
    assert comparison.main(argv + ["--overwrite"], runner=in_process(calls)) == 0
    assert "--overwrite" not in calls[0] and "--overwrite" in calls[1]  # segment resumes, evaluate replaces
    assert label_map.stat().st_mtime_ns == written  # already segmented: skipped, not redone


class Interrupted(Exception):
    """A run stopped from outside (the script's signal handling stops it with an exception of its own)."""


def test_a_rerun_after_an_interruption_goes_on_where_it_stopped(tmp_path):
    """Interrupted during the second model's segment, the same command was refused ('OUT/a/eval exists (an earlier
    comparison): rerun with --overwrite'), while the docstring promised it would go on where it stopped."""
    cts, labels = write_cases(tmp_path, count=2)
    a = tiny_unet_package(tmp_path, name="a.safetensors").path
    b = tiny_unet_package(tmp_path, context_slices=1, name="b.safetensors").path
    out = tmp_path / "out"
    argv = [str(cts), "--ref", str(labels), "-o", str(out), "--models", "", "--model", f"a={a}", "--model", f"b={b}",
            "--device", "cpu"]

    def stopped_in_b(argv):  # b's segment writes case0, then the run is stopped (as SIGTERM stops it)
        calls.append(list(argv))
        if argv[0] == "segment" and "/b/" in argv[argv.index("-o") + 1].replace("\\", "/") + "/":
            (cts / "case1.nii.gz").rename(tmp_path / "case1.nii.gz")
            try:
                cli.main([str(a) for a in argv])
            finally:
                (tmp_path / "case1.nii.gz").rename(cts / "case1.nii.gz")
            raise Interrupted()
        return cli.main([str(a) for a in argv])

    calls = []
    with pytest.raises(Interrupted):
        comparison.main(argv, runner=stopped_in_b)
    assert [c[0] for c in calls] == ["segment", "evaluate", "segment"]
    assert (out / "a" / "eval" / "summary.json").exists() and (out / "b" / "pred" / "case0.nii.gz").exists()
    assert not (out / "b" / "pred" / "case1.nii.gz").exists() and not (out / "comparison.md").exists()
    a_eval = (out / "a" / "eval" / "cases.csv").read_bytes()
    b_case0 = (out / "b" / "pred" / "case0.nii.gz").stat().st_mtime_ns
    calls = []
    assert comparison.main(argv, runner=in_process(calls)) == 0  # the same command, no --overwrite
    assert [c[0] for c in calls] == ["segment", "segment", "evaluate"]  # a's evaluation kept, b's segment resumed
    assert "--overwrite" not in calls[2]
    assert (out / "a" / "eval" / "cases.csv").read_bytes() == a_eval
    assert (out / "b" / "pred" / "case0.nii.gz").stat().st_mtime_ns == b_case0
    rows = json.loads((out / "comparison.json").read_text())["models"]
    assert rows["a"]["cases_evaluated"] == rows["b"]["cases_evaluated"] == 2
    # predictions that changed since (a case segmented again) are evaluated again, the script's own folder replaced
    (out / "a" / "pred" / "case1.nii.gz").unlink()
    (out / "a" / "pred" / "reports" / "case1.json").unlink()
    with pytest.raises(InputError, match=r"prob.case1.nii.gz exists and was not written .* delete it too"):
        comparison.main(argv, runner=in_process([]))  # its probability map is left: segment would fail the case
    (out / "a" / "prob" / "case1.nii.gz").unlink()
    calls = []
    assert comparison.main(argv, runner=in_process(calls)) == 0
    assert [c[0] for c in calls] == ["segment", "evaluate", "segment"] and "--overwrite" in calls[1]
    # stopped while its evaluate ran (before the script's record of it): still the script's folder, redone
    record = out / "a" / comparison.RECORD
    record.write_text(json.dumps({"pending": True}))
    (out / "a" / "eval" / "cases.csv").write_text("case\n")
    calls = []
    assert comparison.main(argv, runner=in_process(calls)) == 0
    assert [c[0] for c in calls] == ["segment", "evaluate", "segment"] and "--overwrite" in calls[1]
    assert "pending" not in json.loads(record.read_text())
    # the comparison files written halfway by a stopped run: each the new or the earlier one, still the script's
    earlier = b"case\r\n"
    record = json.loads((out / comparison.RECORD).read_text())
    record["previous"]["per_case.csv"] = hashlib.sha256(earlier).hexdigest()
    (out / comparison.RECORD).write_text(json.dumps(record))
    (out / "per_case.csv").write_bytes(earlier)
    assert comparison.main(argv, runner=in_process([])) == 0
    (out / "per_case.csv").write_bytes(b"mine")  # neither: a user's file
    with pytest.raises(InputError, match="per_case.csv exists"):
        comparison.main(argv, runner=in_process([]))


def test_a_missing_package_stops_before_any_work_and_a_model_that_writes_nothing_is_an_error_column(tmp_path):
    cts, labels = write_cases(tmp_path, count=1)
    a = tiny_unet_package(tmp_path).path
    out = tmp_path / "out"
    calls = []
    base = [str(cts), "--ref", str(labels), "--models", "", "--model", f"a={a}", "--device", "cpu"]
    with pytest.raises(Exception, match="missing.safetensors"):  # every package is loaded before segment runs
        comparison.main(base + ["-o", str(out), "--model", f"gone={tmp_path / 'missing.safetensors'}"],
                        runner=in_process(calls))
    assert calls == [] and not out.exists()
    # a model whose segment writes no label map (here: its runner fails at once) is a column of its own error
    def failing_for_b(argv):
        if argv[0] == "segment" and Path(argv[argv.index("-o") + 1]).parent.name == "b":
            return 2
        return in_process(calls)(argv)
    code = comparison.main(base + ["-o", str(out), "--model", f"b={a}"], runner=failing_for_b)
    assert code == 1
    rows = json.loads((out / "comparison.json").read_text())["models"]
    assert "error" not in rows["a"] and rows["b"]["error"].startswith("segment wrote no label map (exit 2)")
    table = (out / "comparison.md").read_text()
    assert "| liver Dice, mean / worst case |" in table and "b: segment wrote no label map" in table


def test_predictions_another_model_wrote_or_of_other_cases_are_refused_before_any_work(tmp_path):
    """segment keeps an existing label map as 'already segmented': a rerun with another package under the same
    NAME reported the first package's numbers as the second's, and a case no longer in CTS was still evaluated."""
    cts, labels = write_cases(tmp_path, count=2)
    a = tiny_unet_package(tmp_path, name="a.safetensors").path
    b = tiny_unet_package(tmp_path, context_slices=1, name="b.safetensors").path
    out = tmp_path / "out"
    base = [str(cts), "--ref", str(labels), "-o", str(out), "--models", "", "--device", "cpu", "--overwrite"]
    assert comparison.main(base + ["--model", f"x={a}"], runner=in_process([])) == 0
    before = {p: p.read_bytes() for p in (out / "x").rglob("*") if p.is_file()}
    calls = []
    with pytest.raises(InputError, match="not segmented with x's package"):
        comparison.main(base + ["--model", f"x={b}"], runner=in_process(calls))
    (cts / "case1.nii.gz").unlink()  # a case that left CTS
    with pytest.raises(InputError, match=r"1 file\(s\) of cases not in CTS \(case1.nii.gz\)"):
        comparison.main(base + ["--model", f"x={a}"], runner=in_process(calls))
    assert calls == [] and {p: p.read_bytes() for p in (out / "x").rglob("*") if p.is_file()} == before
    with pytest.raises(InputError, match="inside --ref"):
        comparison.main([str(cts), "--ref", str(labels), "-o", str(labels / "out"), "--models", "", "--model",
                         f"x={a}"], runner=in_process(calls))
    assert calls == [] and not (labels / "out").exists()


def test_predictions_made_with_other_segment_settings_are_refused_before_any_work(tmp_path):
    """`segment CTS -o OUT/x/pred --no-postprocess` beforehand: segment itself refuses to resume such a folder, but
    the script went on and evaluated the raw output as x's (its check compared weights and case names only)."""
    cts, labels = write_cases(tmp_path, count=2)
    a = tiny_unet_package(tmp_path).path
    out = tmp_path / "out"
    pred = out / "x" / "pred"
    assert cli.main(["segment", str(cts), "-o", str(pred), "--model", str(a), "--device", "cpu", "--no-progress",
                     "--no-postprocess"]) == 0
    before = {p: p.read_bytes() for p in pred.rglob("*") if p.is_file()}
    calls = []
    with pytest.raises(InputError, match=r"x: 2 case\(s\) .*\(other postprocessing \(.*largest_liver_component.*\)\).* delete " + re.escape(str(pred))):
        comparison.main([str(cts), "--ref", str(labels), "-o", str(out), "--models", "", "--model", f"x={a}",
                         "--device", "cpu"], runner=in_process(calls))
    assert calls == [] and {p: p.read_bytes() for p in pred.rglob("*") if p.is_file()} == before
    assert not (out / "x" / "eval").exists()
    # the same check (batch.check_earlier_results) refuses a case whose CT file is another than the one segmented
    shutil.rmtree(pred)
    base = [str(cts), "--ref", str(labels), "-o", str(out), "--models", "", "--model", f"x={a}", "--device", "cpu"]
    assert comparison.main(base, runner=in_process([])) == 0
    shutil.copy(cts / "case0.nii.gz", cts / "case1.nii.gz")  # another cohort's CT under the same name
    with pytest.raises(InputError, match=r"x: 1 case\(s\) .*case1 \(another CT file"):
        comparison.main(base + ["--overwrite"], runner=in_process(calls))
    assert calls == []


def test_a_segment_that_refuses_to_run_is_an_error_column_not_an_evaluation_of_earlier_label_maps(tmp_path):
    """A refusal before any work (here: another live run holds the folder's batch lock) exits 2 as failed cases do;
    the label maps an earlier run left were evaluated as this run's and the script ended with exit 0."""
    from LiverTumorSegLib.inference.batch import BATCH_LOCK_FILE
    from LiverTumorSegLib.processes import process_mark

    cts, labels = write_cases(tmp_path, count=1)
    a = tiny_unet_package(tmp_path).path
    out = tmp_path / "out"
    argv = [str(cts), "--ref", str(labels), "-o", str(out), "--models", "", "--model", f"a={a}", "--device", "cpu",
            "--overwrite"]
    assert comparison.main(argv, runner=in_process([])) == 0
    from LiverTumorSegLib.inference.batch import batch_folder_lock
    calls = []
    with batch_folder_lock(out / "a" / "pred"):  # another run holds it (a run holds a flock on the file since 60275a1)
        assert (out / "a" / "pred" / BATCH_LOCK_FILE).read_text(encoding="ascii") == process_mark()
        assert comparison.main(argv, runner=in_process(calls)) == 1
    assert [c[0] for c in calls] == ["segment"]  # never evaluated
    row = json.loads((out / "comparison.json").read_text())["models"]["a"]
    assert row["error"].startswith("segment could not run (exit 2")
    assert "b: " not in (out / "comparison.md").read_text() and "a: segment could not run" in \
        (out / "comparison.md").read_text()


def test_references_evaluate_would_refuse_stop_the_script_before_any_ct_is_segmented(tmp_path):
    """A reference of 0/255 values or on another grid than its CT failed only at evaluate time, once per model, after
    every model had segmented every CT."""
    cts, labels = write_cases(tmp_path, count=2)
    a = tiny_unet_package(tmp_path).path
    base = [str(cts), "--ref", str(labels), "--models", "", "--model", f"a={a}", "--device", "cpu"]
    path = labels / "case1.nii.gz"
    original = read_label_map(path)
    write_label_map(path, (original.array >= 1).astype(np.uint8) * 255, original.geometry, overwrite=True)
    calls = []
    with pytest.raises(InputError, match=r"1 of the 2 reference\(s\).*case1.nii.gz' holds values 255 outside .*"
                                         r"--label-map '\{\"1\": 1, \"2\": 2, \"255\": 1\}'"):
        comparison.main(base + ["-o", str(tmp_path / "o1")], runner=recording(calls))
    with pytest.raises(InputError, match="--label-map must be JSON"):
        comparison.main(base + ["-o", str(tmp_path / "o2"), "--label-map", "{255: 1}"], runner=recording(calls))
    assert calls == []
    # a map that leaves values out: evaluate only warns and scores them as background (case0's whole liver and
    # tumor under '{"255": 1}', and the run went on to segment); refused before any work
    with pytest.raises(InputError, match=r"case0.nii.gz' holds value\(s\) 1 \(\d+ voxels\), 2 \(\d+ voxels\) that "
                                         r"--label-map \{\"255\": 1\} does not list.*e.g. --label-map "
                                         r"'\{\"255\": 1, \"1\": 1, \"2\": 2\}'.*score them as background"):
        comparison.main(base + ["-o", str(tmp_path / "o3"), "--label-map", '{"255": 1}'], runner=recording(calls))
    assert calls == []
    # mapped as evaluate maps it, every value listed, it passes
    comparison.main(base + ["-o", str(tmp_path / "o3"), "--label-map", '{"255": 1, "1": 1, "2": 2}'],
                    runner=recording(calls))
    assert [c[0] for c in calls] == ["segment"]
    calls.clear()
    # another grid than its CT's (here 1 mm off in origin, and another spacing)
    moved = original.geometry
    shifted = type(moved)(spacing=(2.0, 2.0, 5.0), origin=tuple(o + 1.0 for o in moved.origin),
                          direction=moved.direction)
    write_label_map(path, original.array, shifted, overwrite=True)
    with pytest.raises(InputError, match=r"Reference '.*case1.nii.gz' is not on the grid of its CT '.*case1.nii.gz' "
                                         r"\(case 'case1'\): spacing .*origin .*resample it onto the CT's grid"):
        comparison.main(base + ["-o", str(tmp_path / "o4")], runner=recording(calls))
    # the same grid stored in another axis order is no problem (evaluate reorients the prediction onto it)
    from inference_helpers import reoriented
    from LiverTumorSegLib.volume import CTVolume
    flipped, flipped_labels = reoriented(CTVolume(original.array, original.geometry), original.array, (0, 1, 2),
                                         (False, True, True))
    write_label_map(path, flipped_labels, flipped.geometry, overwrite=True)
    comparison.main(base + ["-o", str(tmp_path / "o5")], runner=recording(calls))
    # no case in common: evaluate's "No case name matches", before the work too
    for label in labels.iterdir():
        label.rename(labels / f"other_{label.name}")
    with pytest.raises(InputError, match="No case name of CTS matches"):
        comparison.main(base + ["-o", str(tmp_path / "o6")], runner=recording(calls))
    assert [c[0] for c in calls] == ["segment"]
    # an unreadable CT is segment's to report (its case fails there), not this check's
    from LiverTumorSegLib.inference.batch import find_cases
    (cts / "case0.nii.gz").write_bytes(b"not a CT")
    comparison.check_references(find_cases(cts, tmp_path / "o7"), {"case0": labels / "other_case0.nii.gz"}, None)


STOPPED_CHILD = """
import os, signal, sys, time
marker = sys.argv[1]
def stop(signum, frame):
    with open(marker + ".got", "a") as handle:
        handle.write(f"{signum}\\n")
    time.sleep(0.3)  # its clean-up, which the script waits for
    sys.exit(128 + signum)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
with open(marker + ".pid", "w") as handle:
    handle.write(str(os.getpid()))
time.sleep(120)
"""

DRIVER = """
import sys
sys.path[:0] = [{root!r}, {helpers!r}]
{prelude}
from script_helpers import load_script
comparison = load_script("scripts/heldout_comparison.py", "heldout_comparison")
# the packages' weights named by the file's SHA-256, not read by loading each package: that load imports torch and
# MONAI (5-7 s of each test) for a check these tests do not look at; the stop signals' handling is the script's own
comparison._weights_sha256 = lambda package: comparison._file_sha256(comparison.Path(package))
def runner(argv):  # the script's own way of running a command, here one that waits to be stopped
    return comparison.run_child([sys.executable, "-c", {child!r}, {marker!r}], what="livertumorseg " + argv[0])
sys.exit(comparison.main(sys.argv[1:], runner=runner))
"""


SIGNAL_TO_ANOTHER_THREAD = """
import os, signal, threading, time
def _signal_this_thread(marker):  # as the kernel may hand a process's signal to any of its threads (torch's)
    while not (os.path.exists(marker + ".pid") and open(marker + ".pid").read()):
        time.sleep(0.05)
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
threading.Thread(target=_signal_this_thread, args=({marker!r},), daemon=True).start()
"""


def _script_running_a_waiting_child(tmp_path, prelude=""):
    """``(script process, marker)``: the script started in a process of its own on one case, its segment replaced
    by STOPPED_CHILD, which writes its pid to ``marker + '.pid'`` and waits to be stopped. ``prelude``: code the
    script runs first (``{marker!r}`` in it is the marker)."""
    import sys

    cts, labels = write_cases(tmp_path, count=1)
    a = tiny_unet_package(tmp_path).path
    marker = str(tmp_path / "child")
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(root=str(Path(comparison.__file__).parents[1]),
                                    helpers=str(Path(__file__).parent), child=STOPPED_CHILD, marker=marker,
                                    prelude=prelude.format(marker=marker)))
    script = subprocess.Popen([sys.executable, str(driver), str(cts), "--ref", str(labels), "-o", str(tmp_path / "o"),
                               "--models", "", "--model", f"a={a}", "--device", "cpu"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return script, marker


# how long the script may take to start its child: Python, the script's imports and its checks, which a slow, busy
# CI machine makes several times slower (30 and 60 s ran out with the machine loaded 7-fold); only a hang reaches it
CHILD_STARTED_WITHIN_S = 300


def _waited_child_pid(script, marker):
    """The pid STOPPED_CHILD wrote once it waits to be stopped (its handlers set), waited for while the script runs."""
    import time

    def written():
        return Path(marker + ".pid").exists() and Path(marker + ".pid").read_text()

    deadline = time.monotonic() + CHILD_STARTED_WITHIN_S
    while not written():
        ended = script.poll() is not None
        assert not ended or written(), script.communicate()  # looked at again: it may have ended just after writing
        if ended:
            break
        assert time.monotonic() < deadline, "the script started no child"
        time.sleep(0.1)
    return int(Path(marker + ".pid").read_text())


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_script_alone_stops_the_running_segment_too(tmp_path, signum):
    """SIGTERM to the script's pid (not its process group) ended it silently while the child segment went on,
    orphaned; SIGINT to it alone killed the child outright (subprocess.run's clean-up)."""
    import os

    script, marker = _script_running_a_waiting_child(tmp_path)
    try:
        child = _waited_child_pid(script, marker)
        assert os.getpgid(child) != os.getpgid(script.pid)  # its own session: a Ctrl-C reaches it once, from here
        os.kill(script.pid, signum)  # the script alone
        _, stderr = script.communicate(timeout=60)
    finally:
        if script.poll() is None:
            script.kill()
    assert script.returncode == 128 + signum
    assert Path(marker + ".got").read_text() == f"{int(signum)}\n"  # handed on, once, and waited for
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # ended (and reaped), not orphaned
    last = stderr.strip().splitlines()[-1]
    name = signal.Signals(signum).name
    assert last == (f"error: stopped by {name}; the running 'livertumorseg segment' was stopped too (it removes its "
                    f"unfinished files; exit {128 + signum}); rerun the same command to go on where it stopped")


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="POSIX threads' signals")
def test_a_stop_signal_that_lands_on_another_thread_of_the_script_still_stops_it_and_the_segment(tmp_path):
    """Python runs signal handlers in the main thread, and the kernel may hand a signal sent to the process to any
    thread that does not block it (torch's, for one, when the main thread already has a signal pending). The
    script waited for the running segment without a timeout, so such a SIGTERM was noted and acted on only when the
    segment ended by itself: minutes, in a real run (seen once in CI as the Ctrl-Z test below timing out)."""
    script, marker = _script_running_a_waiting_child(tmp_path, prelude=SIGNAL_TO_ANOTHER_THREAD)
    try:
        _waited_child_pid(script, marker)  # then the script's thread signals itself
        # the child would sleep 120 s from here: a script that waited for it runs into this timeout, which leaves
        # the signal's handling ample time on a slow machine (the start-up is not counted: it is waited for above)
        _, stderr = script.communicate(timeout=60)
    finally:
        if script.poll() is None:
            script.kill()
    assert script.returncode == 128 + signal.SIGTERM, stderr
    assert Path(marker + ".got").read_text() == f"{int(signal.SIGTERM)}\n"  # handed on once, and waited for
    assert stderr.strip().splitlines()[-1].startswith("error: stopped by SIGTERM; the running 'livertumorseg "
                                                      "segment' was stopped too")


def _process_state(pid):
    """The one-letter state of process ``pid`` from /proc (T: stopped)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2]


def _processes_now(script, child, marker):
    """What the script and its child are doing, for a failure's message: each one's state and pending signals (or
    that it has ended), and what the child wrote on getting a stop signal. (The Ctrl-Z test ran into its timeout
    once in a CI run, in 100 runs and more not again, and its message said only that the script had not ended.)"""
    def described(pid):
        try:
            status = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            return "ended"
        wanted = ("State", "SigPnd", "ShdPnd", "SigBlk", "SigCgt", "Threads")
        return "; ".join(line.replace("\t", " ") for line in status if line.split(":")[0] in wanted)

    got = Path(marker + ".got")
    return (f"script (exit status {script.poll()}): {described(script.pid)} | child: {described(child)} | the "
            f"child's signal file: {got.read_text() if got.exists() else 'none'}")


@pytest.mark.skipif(not hasattr(signal, "SIGTSTP") or not Path("/proc/self/stat").exists(),
                    reason="POSIX job control and /proc")
def test_ctrl_z_pauses_the_running_segment_with_the_script_and_fg_continues_both(tmp_path):
    """Known limit until 25 Nov 2026: the running segment has a session of its own (a Ctrl-C reaches it once), so
    the terminal's Ctrl-Z (SIGTSTP to the script's process group) paused the script alone and segment wrote on.
    The script now pauses it with itself and continues it when continued."""
    import os
    import time

    script, marker = _script_running_a_waiting_child(tmp_path)
    child = None

    def wait_for(condition):
        deadline = time.monotonic() + 60  # only a hang reaches it (30 s ran out on a machine loaded 7-fold)
        while not condition():
            assert time.monotonic() < deadline, _processes_now(script, child, marker)
            time.sleep(0.05)

    try:
        child = _waited_child_pid(script, marker)
        os.kill(script.pid, signal.SIGTSTP)  # what Ctrl-Z sends to the terminal's foreground group
        wait_for(lambda: _process_state(script.pid) == "T" and _process_state(child) == "T")
        os.kill(script.pid, signal.SIGCONT)  # fg
        wait_for(lambda: _process_state(script.pid) != "T" and _process_state(child) != "T")
        os.kill(script.pid, signal.SIGTERM)  # and it still stops as before
        try:
            script.communicate(timeout=60)  # until both end: the child holds the script's output open too
        except subprocess.TimeoutExpired:
            pytest.fail(f"60 s after SIGTERM: {_processes_now(script, child, marker)}")
    finally:
        if script.poll() is None:
            script.kill()
        if child is not None:  # a child left paused by a failure would stay so for ever
            with contextlib.suppress(OSError):
                os.kill(child, signal.SIGKILL)
    assert script.returncode == 128 + signal.SIGTERM
    assert Path(marker + ".got").read_text() == f"{int(signal.SIGTERM)}\n"


CTRL_Z_WHILE_STARTING = """
import os, signal, subprocess, time
_started_by_popen = subprocess.Popen
class _CtrlZWhileStarting(_started_by_popen):  # the child runs, and run_child has not been given it yet
    def __init__(self, args, *rest, **kwargs):
        super().__init__(args, *rest, **kwargs)
        if "-c" in args:  # the segment the script starts
            with open({marker!r} + ".popen", "w") as handle:
                handle.write(str(self.pid))
            os.kill(os.getpid(), signal.SIGTSTP)  # Ctrl-Z now
            time.sleep(0.5)  # its handler runs here, inside Popen
subprocess.Popen = _CtrlZWhileStarting
"""


@pytest.mark.skipif(not hasattr(signal, "SIGTSTP") or not Path("/proc/self/stat").exists(),
                    reason="POSIX job control and /proc")
def test_ctrl_z_while_the_segment_starts_pauses_it_once_it_is_started(tmp_path):
    """Seen in a stress run of the test above (1 Dec 2026): a Ctrl-Z whose handler ran while subprocess.Popen had
    started segment but not yet returned it paused the script alone (state T) and segment went on (S). The handler
    now leaves the pause to run_child, which pauses both as soon as it has the child."""
    import os
    import time

    script, marker = _script_running_a_waiting_child(tmp_path, prelude=CTRL_Z_WHILE_STARTING)
    child = None

    def wait_for(condition, limit=60):
        deadline = time.monotonic() + limit
        while not condition():
            assert time.monotonic() < deadline, _processes_now(script, child or 0, marker)
            time.sleep(0.05)

    try:
        wait_for(lambda: Path(marker + ".popen").exists() and Path(marker + ".popen").read_text(),
                 CHILD_STARTED_WITHIN_S)
        child = int(Path(marker + ".popen").read_text())
        wait_for(lambda: _process_state(script.pid) == "T" and _process_state(child) == "T")
        os.kill(script.pid, signal.SIGCONT)  # fg
        assert _waited_child_pid(script, marker) == child  # it goes on: its handlers set, it waits
        os.kill(script.pid, signal.SIGTERM)
        try:
            script.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"60 s after SIGTERM: {_processes_now(script, child, marker)}")
    finally:
        if script.poll() is None:
            script.kill()
        if child is not None:
            with contextlib.suppress(OSError):
                os.kill(child, signal.SIGKILL)
    assert script.returncode == 128 + signal.SIGTERM
    assert Path(marker + ".got").read_text() == f"{int(signal.SIGTERM)}\n"


def recording(calls, code=2):
    """A runner that records each argv and does nothing (a segment that fails at once)."""
    def run(argv):
        calls.append(list(argv))
        return code
    return run


def test_a_label_map_named_so_in_the_cts_folder_is_refused_before_any_work_not_counted_as_a_failure(tmp_path):
    """segment's batch leaves a label map named as one ('case0_liver.nii.gz') out of a folder with one warning, and
    the table listed its case as a reference without a prediction: a failure of every model, for a file. A CT so
    named is segmented since 0.6.23 (it was left out on its name: the batch audit), and its prediction
    'case0_liver' is evaluated as case0: no refusal."""
    cts, labels = write_cases(tmp_path, count=2)
    (cts / "case0.nii.gz").rename(cts / "case0_liver.nii.gz")
    a = tiny_unet_package(tmp_path).path
    calls = []
    comparison.main([str(cts), "--ref", str(labels), "-o", str(tmp_path / "out0"), "--models", "", "--model",
                     f"a={a}"], runner=recording(calls))
    assert [c[0] for c in calls] == ["segment"] and comparison.evaluate_name("case0_liver") == "case0"
    calls.clear()
    shutil.move(str(cts / "case0_liver.nii.gz"), str(tmp_path / "case0_ct.nii.gz"))
    shutil.copy(labels / "case0.nii.gz", cts / "case0_liver.nii.gz")  # now a label map so named, and no case0 CT
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"named as label maps \(case0_liver.nii.gz\).*'case0_liver.nii.gz' -> "
                                         r"'case0.nii.gz'"):
        comparison.main([str(cts), "--ref", str(labels), "-o", str(out), "--models", "", "--model", f"a={a}"],
                        runner=recording(calls))
    assert calls == [] and not (out / "a").exists()
    shutil.move(str(tmp_path / "case0_ct.nii.gz"), str(cts / "case0_liver.nii.gz"))  # the CT again
    # LiTS's layout, a label map beside its CT (one folder for CTS and --ref), and a label-named file of a case
    # without a reference, are no such case
    lits = tmp_path / "lits"
    lits.mkdir()
    for name in ("volume-0.nii.gz", "volume-1.nii.gz"):
        shutil.copy(cts / "case1.nii.gz", lits / name)
    for name in ("segmentation-0.nii.gz", "segmentation-1.nii.gz"):
        shutil.copy(labels / "case1.nii.gz", lits / name)
    comparison.main([str(lits), "--ref", str(lits), "-o", str(tmp_path / "out2"), "--models", "", "--model",
                     f"a={a}"], runner=recording(calls))
    (cts / "case0_liver.nii.gz").rename(cts / "case0.nii.gz")
    shutil.copy(labels / "case1.nii.gz", cts / "stray_seg.nii.gz")  # no reference 'stray': in no number
    comparison.main([str(cts), "--ref", str(labels), "-o", str(tmp_path / "out3"), "--models", "", "--model",
                     f"a={a}"], runner=recording(calls))
    assert [c[0] for c in calls] == ["segment", "segment"]


def test_a_reference_without_a_ct_is_refused_before_any_work_not_counted_as_a_failure(tmp_path):
    """A reference whose CT was not in CTS (not copied, named otherwise, or a DICOM series folder, which segment does
    not take from a folder) was listed as a reference without a prediction: '1 (case1) (misses)' for every model and
    the verdict "no" for all, for a failure no model made."""
    cts, labels = write_cases(tmp_path, count=2)
    (cts / "case1.nii.gz").unlink()
    a = tiny_unet_package(tmp_path).path
    calls = []
    base = ["--ref", str(labels), "--models", "", "--model", f"a={a}", "--device", "cpu"]
    with pytest.raises(InputError, match=r"^1 of the 2 reference\(s\) in --ref have no CT in CTS: 'case1.nii.gz' "
                                         r"\(case 'case1'\)\. Each would count as a failure of every model.*move "
                                         r"those references out of --ref if their CTs are not part of this "
                                         r"comparison\.$"):
        comparison.main([str(cts), "-o", str(tmp_path / "o1")] + base, runner=recording(calls))
    # its CT a DICOM series folder: segment takes only a folder's CT files, so the message says to list them in a CSV
    series = cts / "case1"
    series.mkdir()
    (series / "IM0001.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    with pytest.raises(InputError, match=r"no CT in CTS: 'case1.nii.gz'.*CTS holds 1 DICOM series folder\(s\) "
                                         r"\(case1\).*case CSV \(columns image and case_id.*'case1' for "
                                         r"case1.nii.gz in --ref\) and give the CSV as CTS\.$"):
        comparison.main([str(cts), "-o", str(tmp_path / "o2")] + base, runner=recording(calls))
    # a folder of DICOM series only is a batch of one case per folder (0.6.21): case1 is found there, and case0's
    # missing CT is named without the advice about series folders
    only_series = tmp_path / "series_only"
    only_series.mkdir()
    series.rename(only_series / "case1")
    with pytest.raises(InputError, match=r"^1 of the 2 reference\(s\) in --ref have no CT in CTS: 'case0.nii.gz' "
                                         r"\(case 'case0'\)\. .*comparison\.$"):
        comparison.main([str(only_series), "-o", str(tmp_path / "o3")] + base, runner=recording(calls))
    assert calls == []
    # every reference with its CT (a CT without a reference is no such case: it is in no number), it runs
    write_volume(cts / "case1.nii.gz", make_phantom((12, 40, 44), (2.0, 2.0, 4.0), noise_hu=0.0).ct)
    shutil.copy(cts / "case0.nii.gz", cts / "extra.nii.gz")
    comparison.main([str(cts), "-o", str(tmp_path / "o4")] + base, runner=recording(calls))
    assert [c[0] for c in calls] == ["segment"]


def _row(**changes):
    row = {"dice_liver_mean": 0.945, "dice_liver_worst": 0.92, "dice_tumor_mean": 0.70, "false_lesions": 10,
           "liver_outside_ml": 80.0, "cases_without_prediction": []}
    row.update(changes)
    return row


@pytest.mark.parametrize("changes, meets", [
    ({}, True),  # every target met exactly
    ({"dice_liver_mean": 0.9449}, False),
    ({"dice_liver_worst": 0.9199}, False),
    ({"dice_tumor_mean": 0.6999}, False),
    ({"false_lesions": 11}, False),
    ({"liver_outside_ml": 80.1}, False),
    ({"cases_without_prediction": ["x"]}, False),
    ({"dice_tumor_mean": None}, False),
])
def test_issue_11_targets(changes, meets):
    assert comparison.meets_targets(_row(**changes)) is meets


def _table_row(**changes):
    row = dict(_row(**changes), cases_evaluated=3, predictions_without_reference=[], segment_failed_cases=[],
               implausible_cases=[])
    row["meets_targets"] = comparison.meets_targets(row)
    return row


def _cells(table):
    """``{row label: the model's cell}`` of a one-model table."""
    return {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1] for line in table.splitlines()[2:] if " | " in line}


def test_the_table_never_shows_a_number_past_its_target_beside_a_no():
    """The audit's row: every number rounded to 3 decimals (1 for mL) read as at or past its target, and the verdict
    said "no" (0.9196 shown as 0.920 beside >= 0.92, 0.6996 as 0.700, 80.04 mL as 80.0)."""
    row = _table_row(dice_liver_mean=0.94951, dice_liver_worst=0.9196, dice_tumor_mean=0.6996, false_lesions=10,
                     liver_outside_ml=80.04)
    cells = _cells(comparison.comparison_table({"v3": row}))
    assert cells["meets issue 11's targets"] == "no"
    assert cells["liver Dice, mean / worst case"] == "0.950 / 0.9196 (misses)"
    assert cells["tumor Dice, mean"] == "0.6996 (misses)"
    assert cells["liver labelled outside the reference liver (total mL)"] == "80.04 (misses)"
    assert cells["predicted lesions touching no reference lesion (total)"] == "10"
    assert _cells(comparison.comparison_table({"v3": _table_row(false_lesions=11)}))[
        "predicted lesions touching no reference lesion (total)"] == "11 (misses)"


@pytest.mark.parametrize("key", ["dice_liver_mean", "dice_liver_worst", "dice_tumor_mean", "liver_outside_ml"])
@pytest.mark.parametrize("offset", [-1e-4, -4e-6, -1e-9, 0.0, 1e-9, 4e-6, 1e-4, 0.04])
def test_a_shown_number_is_on_the_side_of_its_target_that_the_number_is_on(key, offset):
    value = comparison.TARGETS[key] + offset
    row = _table_row(**{key: value})
    met = comparison.meets_target(key, value)
    cell = comparison._target_cell(row, key, 1 if key == "liver_outside_ml" else 3)
    shown = float(cell.replace(comparison.MISSES, ""))
    assert comparison.meets_target(key, shown) is met
    assert cell.endswith(comparison.MISSES) is (not met)
    assert row["meets_targets"] is met  # the other numbers are at their targets: this one decides


def test_model_options_are_checked():
    assert comparison.parse_models("v3,v4", ["mine=/x.safetensors"]) == {"v3": None, "v4": None,
                                                                         "mine": "/x.safetensors"}
    for builtin, extra, message in [("v9", [], "no built-in model 'v9'"), ("", ["noequals"], "NAME=PACKAGE"),
                                    ("", ["../up=/x"], "letters, digits"), ("v3", ["v3=/x"], "is taken"),
                                    ("", ["models=/x"], "is taken"), ("", ["Comparison.md=/x"], "is taken"),
                                    ("", ["a=/x", "A=/y"], "is taken"), ("V3", [], "no built-in"),
                                    ("", [], "No model")]:
        with pytest.raises(InputError, match=message):
            comparison.parse_models(builtin, extra)


@pytest.fixture
def history(tmp_path):
    """A git repository whose one commit holds a tiny package at pkg/m.safetensors: (repo, commit, file SHA-256,
    weights SHA-256)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    package = tiny_unet_package(repo / "pkg", name="m.safetensors")
    env_args = ["-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false"]
    for args in (["init", "-q"], ["add", "pkg/m.safetensors"], env_args + ["commit", "-q", "-m", "m"]):
        subprocess.run(["git", "-C", str(repo)] + args, check=True)
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, stdout=subprocess.PIPE,
                            text=True).stdout.strip()
    return repo, commit, hashlib.sha256((repo / "pkg" / "m.safetensors").read_bytes()).hexdigest(), package.sha256


def test_the_bundled_v10_is_taken_by_its_installed_name(tmp_path):
    """v10 is taken as installed ('default') while the bundled weights are v10's, and a package may be given as an
    installed model's name; the predictions' check then read the package's metadata from the name as a file path,
    and the script's default (--models v10,v3) stopped with "Model package 'default' does not exist" before any
    work (an audit of the scripts, 1 Dec 2026)."""
    cts, labels = write_cases(tmp_path, count=1)
    assert comparison.builtin_package("v10", tmp_path / "models") == "default"
    for models in ({"v10": None}, {"d": "default"}):
        calls = []
        rows = comparison.compare(str(cts), str(labels), tmp_path / f"out_{len(models)}_{next(iter(models))}",
                                  models, runner=recording(calls), device="cpu")
        assert [c[0] for c in calls] == ["segment"] and "default" in calls[0]  # segment ran, with the name
        assert "error" in next(iter(rows.values()))  # the recording runner 'failed' it, as a row, not a stop


def test_a_builtin_model_comes_from_history_only_with_its_pinned_weights(tmp_path, history, monkeypatch):
    repo, commit, file_sha, weights_sha = history
    models = tmp_path / "out" / "models"
    monkeypatch.setitem(comparison.BUILTIN_MODELS, "old",
                        comparison.BuiltinModel("x", commit, "pkg/m.safetensors", file_sha, weights_sha))
    path = comparison.builtin_package("old", models, repo)
    assert path == str(models / "old.safetensors")
    assert (models / "old.safetensors").read_bytes() == (repo / "pkg" / "m.safetensors").read_bytes()
    assert comparison.builtin_package("old", models, repo) == path  # a rerun takes the file it wrote

    monkeypatch.setitem(comparison.BUILTIN_MODELS, "other",
                        comparison.BuiltinModel("x", commit, "pkg/m.safetensors", "0" * 64, weights_sha))
    with pytest.raises(InputError, match="not other's"):
        comparison.builtin_package("other", models, repo)
    assert sorted(p.name for p in models.iterdir()) == ["old.safetensors"]  # nothing of the refused one is left
    # a file in its place that is not that model is refused, never replaced
    (models / "other.safetensors").write_bytes(b"mine")
    with pytest.raises(InputError, match="exists and is not other"):
        comparison.builtin_package("other", models, repo)
    assert (models / "other.safetensors").read_bytes() == b"mine"

    monkeypatch.setitem(comparison.BUILTIN_MODELS, "absent",
                        comparison.BuiltinModel("x", "f" * 40, "pkg/m.safetensors", file_sha, weights_sha))
    with pytest.raises(InputError, match="git fetch --unshallow"):
        comparison.builtin_package("absent", models, repo)
    # every built-in model is found before the first CT is segmented: no hours of work before that error
    calls = []
    with pytest.raises(InputError, match="git fetch --unshallow"):
        comparison.compare("cts", "labels", tmp_path / "out", {"old": None, "absent": None}, runner=calls.append,
                           repo=repo)
    assert calls == []


def test_a_builtin_model_with_a_lesion_rule_is_its_history_file_with_the_rule_recorded(tmp_path, history,
                                                                                      monkeypatch):
    """v11peak is v11's file read by each lesion's peak: the file from history (its pins checked), with the rule
    recorded and the weights unchanged; a rerun takes the file it wrote, and a file in its place that holds the same
    weights without that rule is refused, never replaced."""
    from LiverTumorSegLib.package import (package_lesion_probability_statistic, package_min_lesion_probability,
                                          read_package_metadata)

    repo, commit, file_sha, weights_sha = history
    models = tmp_path / "out" / "models"
    monkeypatch.setitem(comparison.BUILTIN_MODELS, "peaked", comparison.BuiltinModel(
        "x", commit, "pkg/m.safetensors", file_sha, weights_sha, lesion_rule=(0.9, "peak")))
    path = comparison.builtin_package("peaked", models, repo)
    assert path == str(models / "peaked.safetensors") and sorted(p.name for p in models.iterdir()) == [
        "peaked.safetensors"]  # no partial file left
    meta = read_package_metadata(path)
    assert (package_min_lesion_probability(meta), package_lesion_probability_statistic(meta)) == (0.9, "peak")
    assert comparison._weights_sha256(path) == weights_sha
    written = Path(path).read_bytes()
    assert comparison.builtin_package("peaked", models, repo) == path and Path(path).read_bytes() == written
    Path(path).write_bytes((repo / "pkg" / "m.safetensors").read_bytes())  # its weights, read by the mean
    with pytest.raises(InputError, match="exists and is not peaked .*lesion rule 0.9 of the peak"):
        comparison.builtin_package("peaked", models, repo)
    assert Path(path).read_bytes() == (repo / "pkg" / "m.safetensors").read_bytes()
    Path(path).write_bytes(b"mine")
    with pytest.raises(InputError, match="exists and is not peaked"):
        comparison.builtin_package("peaked", models, repo)
    assert Path(path).read_bytes() == b"mine"


def test_each_builtin_model_is_in_this_repositorys_history_with_its_pinned_file_and_weights(tmp_path):
    """The pins are typed by hand when a candidate is kept (v11's on 1 Dec 2026): a wrong commit, path or hash would
    show only when the team's held-out read asks for that model. Each built-in is read from this clone's history as
    builtin_package reads it, and its file's and its weights' SHA-256 must be the pinned ones."""
    root = Path(comparison.ROOT)
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git clone of the repository (a source archive has no history)")
    if subprocess.run(["git", "-C", str(root), "rev-parse", "--is-shallow-repository"], stdout=subprocess.PIPE,
                      text=True).stdout.strip() == "true":
        pytest.skip("a shallow clone lacks the commits the built-in models are kept in")
    assert {"v10", "v3", "v11", "v11peak"} <= set(comparison.BUILTIN_MODELS)
    for name, model in comparison.BUILTIN_MODELS.items():
        blob = comparison._git_blob(model.commit, model.path, root)
        assert hashlib.sha256(blob).hexdigest() == model.file_sha256, name
        (tmp_path / f"{name}.safetensors").write_bytes(blob)
        assert comparison._weights_sha256(tmp_path / f"{name}.safetensors") == model.weights_sha256, name


def test_references_with_other_label_values_are_read_with_label_map(tmp_path):
    cts, labels = write_cases(tmp_path, count=1)
    path = labels / "case0.nii.gz"
    reference = read_label_map(path)
    recoded = np.select([reference.array == 1, reference.array == 2], [7, 9], 0).astype(np.uint8)
    write_label_map(path, recoded, reference.geometry, overwrite=True)
    a = tiny_unet_package(tmp_path).path
    base = [str(cts), "--ref", str(labels), "--models", "", "--model", f"a={a}", "--device", "cpu"]
    calls = []
    with pytest.raises(InputError, match=r"values 7, 9 outside .*Map them with --label-map"):  # before any work
        comparison.main(base + ["-o", str(tmp_path / "plain")], runner=in_process(calls))
    assert calls == []
    assert comparison.main(base + ["-o", str(tmp_path / "mapped"), "--label-map", '{"7": 1, "9": 2}'],
                           runner=in_process(calls)) == 0
    assert calls[1][calls[1].index("--label-map") + 1] == '{"7": 1, "9": 2}'
    row = json.loads((tmp_path / "mapped" / "comparison.json").read_text())["models"]["a"]
    assert row["cases_evaluated"] == 1 and row["cases_without_prediction"] == []


def test_per_case_table_sets_models_side_by_side_under_evaluate_s_case_names(tmp_path):
    out = tmp_path / "out"
    for name, dice, flagged in (("m1", "0.9", True), ("m2", "0.8", False)):
        (out / name / "eval").mkdir(parents=True)
        (out / name / "pred" / "reports").mkdir(parents=True)
        (out / name / "eval" / "cases.csv").write_text(
            "case,dice_liver,dice_tumor,lesions_pred_no_overlap,volume_outside_ref_liver_ml\n"
            f"patient_07,{dice},0.5,3,12.5\n")
        warnings = ["Implausible result: the liver volume is 71 mL"] if flagged else ["a note"]
        (out / name / "pred" / "reports" / "Patient_07_0000.json").write_text(json.dumps({"warnings": warnings}))
    assert comparison.implausible_cases(out / "m1" / "pred", evaluated=["patient_08"]) == []  # not evaluated
    rows = {name: {"implausible_cases": comparison.implausible_cases(out / name / "pred"),
                   "cases_without_prediction": ["patient_09"] if name == "m2" else []} for name in ("m1", "m2")}
    assert rows["m1"]["implausible_cases"] == ["patient_07"] and rows["m2"]["implausible_cases"] == []
    rows["broken"] = {"error": "segment wrote no prediction (exit 2)"}
    table = comparison.per_case_rows(rows, out)
    assert table == [
        {"case": "patient_07", "m1_dice_liver": "0.9", "m1_dice_tumor": "0.5", "m1_false_lesions": "3",
         "m1_liver_outside_ml": "12.5", "m1_implausible": "yes", "m2_dice_liver": "0.8", "m2_dice_tumor": "0.5",
         "m2_false_lesions": "3", "m2_liver_outside_ml": "12.5", "m2_implausible": "no"},
        {"case": "patient_09", "m1_dice_liver": "", "m1_dice_tumor": "", "m1_false_lesions": "",
         "m1_liver_outside_ml": "", "m1_implausible": "", "m2_dice_liver": "", "m2_dice_tumor": "",
         "m2_false_lesions": "", "m2_liver_outside_ml": "", "m2_implausible": ""}]


def test_the_commands_it_runs_stop_when_it_is_killed_outright():
    """run_child hands its children this script's process id (LiverTumorSegLib.parent_watch): a SIGKILL, which no
    handler here can pass on, left segment running for minutes."""
    import sys

    check = ("import os, sys; sys.exit(0 if os.environ.get('LIVERTUMORSEG_PARENT_PID') == str(os.getppid()) "
             "else 3)")
    assert comparison.run_child([sys.executable, "-c", check]) == 0


def test_probability_maps_give_evaluate_s_lesion_froc_and_an_older_folder_without_them_is_refused(tmp_path):
    """The team's table had no lesion FROC: the script never asked segment for probability maps. Now each model's
    segment writes OUT/NAME/prob, evaluate reads them, and the table shows evaluate's FROC; a folder segmented
    without them (this script before, or --no-probabilities) is refused before any work, not failed case by case."""
    cts, labels = write_cases(tmp_path, count=2)
    a = tiny_unet_package(tmp_path).path
    out = tmp_path / "out"
    argv = [str(cts), "--ref", str(labels), "-o", str(out), "--models", "", "--model", f"a={a}", "--device", "cpu"]
    calls = []
    assert comparison.main(argv, runner=in_process(calls)) == 0
    segment, evaluate = calls
    assert segment[segment.index("--probabilities") + 1] == str(out / "a" / "prob")
    assert evaluate[evaluate.index("--prob") + 1] == str(out / "a" / "prob")
    assert sorted(p.name for p in (out / "a" / "prob").iterdir()) == ["case0.nii.gz", "case1.nii.gz"]
    summary = json.loads((out / "a" / "eval" / "summary.json").read_text())
    froc = summary["lesion_froc"]
    assert froc["n_cases"] == 2 and froc["n_ref_lesions"] == 2  # one reference tumor per phantom
    row = json.loads((out / "comparison.json").read_text())["models"]["a"]
    assert row["lesion_froc"] == froc
    expected = "n/a" if froc["mean_sensitivity"] is None else f"{froc['mean_sensitivity']:.3f}"
    at_one = froc["sensitivity_at_fp_per_case"]["1"]
    table = (out / "comparison.md").read_text()
    assert f"| lesion FROC: tumor sensitivity at 1 false lesion per case / mean at 1/8-8 (CPM) | {at_one:.3f} / " \
        f"{expected} |  |" in table
    # the cell's numbers, read back, are the FROC's
    assert comparison._froc_number(row, "1") == f"{at_one:.3f}"
    assert comparison._froc_number({"lesion_froc": None}, "1") == "n/a"
    assert comparison._froc_number({"lesion_froc": {"mean_sensitivity": float("nan")}}, None) == "n/a"

    # --no-probabilities: neither option, no maps, an n/a row; its folder is refused by a run that asks for maps
    other = tmp_path / "other"
    plain = [str(cts), "--ref", str(labels), "-o", str(other), "--models", "", "--model", f"a={a}", "--device", "cpu"]
    calls = []
    assert comparison.main(plain + ["--no-probabilities"], runner=in_process(calls)) == 0
    assert all("--probabilities" not in c and "--prob" not in c for c in calls)
    assert not (other / "a" / "prob").exists()
    assert "| n/a / n/a |" in (other / "comparison.md").read_text()
    before = {p: p.read_bytes() for p in other.rglob("*") if p.is_file()}
    calls = []
    with pytest.raises(InputError, match=r"case0.nii.gz was segmented without its tumor probability map .*"
                                         r"--no-probabilities to compare without the FROC"):
        comparison.main(plain + ["--overwrite"], runner=in_process(calls))
    assert calls == [] and {p: p.read_bytes() for p in other.rglob("*") if p.is_file()} == before
    # a map in OUT/NAME/prob that no report names (a user's file) is refused before any work too
    third = tmp_path / "third"
    (third / "a" / "prob").mkdir(parents=True)
    (third / "a" / "prob" / "case0.nii.gz").write_bytes(b"mine")
    with pytest.raises(InputError, match=r"case0.nii.gz exists and was not written for a's segmentation"):
        comparison.main([str(cts), "--ref", str(labels), "-o", str(third), "--models", "", "--model", f"a={a}",
                         "--device", "cpu"], runner=in_process(calls))
    assert calls == [] and (third / "a" / "prob" / "case0.nii.gz").read_bytes() == b"mine"


def test_without_a_reference_tumor_the_tumor_dice_is_not_measured_and_the_verdict_not_judged():
    """Seen on the H200 on 26 Nov 2026 with the shared cases (liver labels only): every case's tumor Dice was 1.0
    (no tumor predicted, none in the reference), the table showed "tumor Dice, mean 1.000" beside ">= 0.70" and the
    verdict "yes", a pass no tumor was measured for."""
    row = _table_row()
    row.update(reference_tumor_cases=0, meets_targets=None)
    cells = _cells(comparison.comparison_table({"v3": row}))
    assert cells["tumor Dice, mean"] == "not measured: no reference tumor"
    assert cells["meets issue 11's targets"] == \
        "not judged: no reference case has a tumor (the other targets are met)"
    some = _table_row(dice_tumor_mean=0.75)
    some["reference_tumor_cases"] = 2
    assert _cells(comparison.comparison_table({"v3": some}))["tumor Dice, mean"] == \
        "0.750 (2 of 3 cases with a reference tumor)"
    every = _table_row(dice_tumor_mean=0.75)
    every["reference_tumor_cases"] = 3
    assert _cells(comparison.comparison_table({"v3": every}))["tumor Dice, mean"] == "0.750"


def test_the_tumor_dice_cell_gives_the_mean_over_the_cases_with_a_tumor_too():
    """The mean over every case counts a tumor-free case as 1 (no tumor predicted) or 0 (any): helper-13's rehearsal
    had v3 at 0.9135 over 5 cases and 0.892 over the 4 with a tumor, and the table showed only the first."""
    rows = [{"voxels_ref_tumor": "120", "dice_tumor": "0.8"}, {"voxels_ref_tumor": "40", "dice_tumor": "0.7"},
            {"voxels_ref_tumor": "0", "dice_tumor": "1.0"}, {"voxels_ref_tumor": "9", "dice_tumor": "nan"}]
    assert comparison.tumor_dice_over_reference_tumors(rows) == pytest.approx(0.75)
    assert comparison.tumor_dice_over_reference_tumors(rows[2:3]) is None
    row = _table_row(dice_tumor_mean=0.8333)
    row.update(reference_tumor_cases=2, dice_tumor_mean_cases_with_tumor=0.75)
    assert _cells(comparison.comparison_table({"v3": row}))["tumor Dice, mean"] == \
        "0.833 (2 of 3 cases with a reference tumor; over those 0.750)"


def test_the_verdict_needs_the_mean_over_the_tumor_cases_to_meet_the_target_too():
    """LiTS's all-case mean counts a tumor-free case 1 when no tumor is predicted: the verdict said "yes" with the one
    tumor case at 0.625 (the script's audit). Both means must meet 0.70; the cell marks the one that misses."""
    row = _table_row(dice_tumor_mean=0.8125)
    row.update(reference_tumor_cases=1, dice_tumor_mean_cases_with_tumor=0.625)
    assert comparison.meets_targets(row) is False
    row["meets_targets"] = comparison.meets_targets(row)
    cells = _cells(comparison.comparison_table({"v3": row}))
    assert cells["tumor Dice, mean"] == "0.812 (1 of 3 cases with a reference tumor; over those 0.625 (misses))"
    assert cells["meets issue 11's targets"] == "no"
    row.update(dice_tumor_mean_cases_with_tumor=0.72)
    assert comparison.meets_targets(row) is True


def test_reference_tumor_count_reads_evaluate_s_cases_csv_column():
    rows = [{"voxels_ref_tumor": "0"}, {"voxels_ref_tumor": "17"}, {"voxels_ref_tumor": ""}, {}]
    assert comparison.reference_tumor_count(rows) == 1


def test_a_model_row_without_reference_tumors_is_not_judged(tmp_path):
    summary = {"n_cases": 2, "metrics": {"dice_liver": {"mean": 0.99, "min": 0.98}, "dice_tumor": {"mean": 1.0}},
               "lesion_detection": {"pred_no_overlap": 0}, "volume_outside_ref_total_ml": {"liver": 5.0}}
    assert comparison.model_row(summary, tmp_path, ["a", "b"], reference_tumor_cases=0)["meets_targets"] is None
    assert comparison.model_row(summary, tmp_path, ["a", "b"], reference_tumor_cases=2)["meets_targets"] is True
    assert comparison.model_row(summary, tmp_path, ["a", "b"])["meets_targets"] is True  # count not known


def test_without_reference_tumors_a_missed_liver_target_or_a_failed_case_is_still_a_no(tmp_path):
    """With no reference tumor the verdict was "not judged: no reference case has a tumor" whatever the rest: a
    worst liver Dice of 0.50 "(misses)" or a case segment failed on still read as not judged, where no tumor Dice
    could make them a pass (the verdict is "no" for those, as with tumors)."""
    summary = {"n_cases": 2, "metrics": {"dice_liver": {"mean": 0.99, "min": 0.50}, "dice_tumor": {"mean": 1.0}},
               "lesion_detection": {"pred_no_overlap": 0}, "volume_outside_ref_total_ml": {"liver": 5.0}}
    row = comparison.model_row(summary, tmp_path, ["a", "b"], reference_tumor_cases=0)
    assert row["meets_targets"] is False
    assert _cells(comparison.comparison_table({"v3": dict(row, predictions_without_reference=[])}))[
        "meets issue 11's targets"] == "no"
    failed = dict(summary, metrics={"dice_liver": {"mean": 0.99, "min": 0.98}, "dice_tumor": {"mean": 1.0}},
                  unmatched={"references_without_prediction": ["b"]})
    assert comparison.model_row(failed, tmp_path, ["a"], reference_tumor_cases=0)["meets_targets"] is False
    many_false = dict(summary, metrics=failed["metrics"], lesion_detection={"pred_no_overlap": 11})
    assert comparison.model_row(many_false, tmp_path, ["a", "b"], reference_tumor_cases=0)["meets_targets"] is False
    fine = dict(summary, metrics=failed["metrics"])
    row = comparison.model_row(fine, tmp_path, ["a", "b"], reference_tumor_cases=0)
    assert row["meets_targets"] is None
    assert _cells(comparison.comparison_table({"v3": dict(row, predictions_without_reference=[])}))[
        "meets issue 11's targets"] == "not judged: no reference case has a tumor (the other targets are met)"


def test_each_case_is_described_by_its_ct_and_reference_in_patient_terms_whatever_its_storage(tmp_path):
    """per_case.csv's descriptors: 'above' and 'below' the liver are the patient's head and feet, read from the
    geometry, so a scan stored from head to foot gives the same numbers as one stored from foot to head."""
    from LiverTumorSegLib.volume import CTVolume, ImageGeometry

    ph = make_phantom((12, 40, 44), (2.0, 2.0, 4.0), lesions=[PhantomLesion(center_zyx=(5.0, 16.0, 14.0),
                                                                            radius_mm=5.0, hu=15.0)], noise_hu=0.0)
    hu = np.concatenate([np.repeat(ph.ct.array[:1], 5, axis=0), ph.ct.array])  # 5 more slices below the liver
    labels = np.concatenate([np.zeros((5,) + ph.labels.shape[1:], np.uint8), ph.labels])
    assert np.nonzero((labels >= 1).any(axis=(1, 2)))[0][[0, -1]].tolist() == [6, 15]  # of slices 0..16
    feet_first = ImageGeometry(spacing=(2.0, 2.0, 4.0), origin=(0.0, 0.0, 0.0))
    head_first = ImageGeometry(spacing=(2.0, 2.0, 4.0), origin=(0.0, 0.0, 64.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, -1))
    described = []
    for name, geometry, order in (("feet_first", feet_first, slice(None)), ("head_first", head_first,
                                                                              slice(None, None, -1))):
        write_volume(tmp_path / f"{name}_ct.nii.gz", CTVolume(array=hu[order].copy(), geometry=geometry))
        write_label_map(tmp_path / f"{name}_seg.nii.gz", labels[order].copy(), geometry)
        described.append(comparison.describe_case(tmp_path / f"{name}_ct.nii.gz", tmp_path / f"{name}_seg.nii.gz"))
    assert described[0] == described[1] == {
        "ct_pixel_mm": "2 x 2", "ct_slice_mm": "4", "ct_slices": "17", "scan_above_liver_mm": "4",
        "scan_below_liver_mm": "24", "ref_liver_ml": f"{np.count_nonzero(labels >= 1) * 0.016:.1f}",
        "ref_liver_mean_hu": "60", "ref_tumor_ml": f"{np.count_nonzero(labels == 2) * 0.016:.1f}",
        "ref_tumor_vs_liver_hu": "-45", "ref_lesions_brighter": "0 of 1"}
    # a reference mapped with --label-map: 0/255 liver masks read as liver
    write_label_map(tmp_path / "mask_seg.nii.gz", ((labels >= 1) * 255).astype(np.uint8), feet_first)
    masked = comparison.describe_case(tmp_path / "feet_first_ct.nii.gz", tmp_path / "mask_seg.nii.gz", '{"255": 1}')
    assert masked["ref_liver_ml"] == described[0]["ref_liver_ml"] and masked["ref_tumor_ml"] == "0.0"
    assert masked["ref_tumor_vs_liver_hu"] == "" and masked["ref_lesions_brighter"] == "0 of 0"


def test_the_descriptors_count_the_reference_lesions_brighter_than_the_liver(tmp_path):
    """A case of hypervascular tumors (brighter than the liver, as an arterial phase shows them) reads as such in
    per_case.csv, so a held-out failure can be read against it: v3 misses such tumors (README)."""
    lesions = [PhantomLesion(center_zyx=(4.0, 12.0, 10.0), radius_mm=5.0, hu=95.0),   # 35 HU brighter
               PhantomLesion(center_zyx=(4.0, 20.0, 17.0), radius_mm=5.0, hu=66.0),   # 6 HU: not counted
               PhantomLesion(center_zyx=(7.0, 15.0, 13.0), radius_mm=4.0, hu=10.0)]   # darker (voxel centres)
    ph = make_phantom((12, 40, 44), (2.0, 2.0, 4.0), lesions=lesions, noise_hu=0.0)
    write_volume(tmp_path / "ct.nii.gz", ph.ct)
    write_label_map(tmp_path / "seg.nii.gz", ph.labels, ph.ct.geometry)
    described = comparison.describe_case(tmp_path / "ct.nii.gz", tmp_path / "seg.nii.gz")
    assert described["ref_lesions_brighter"] == "1 of 3"
    assert described["ref_tumor_vs_liver_hu"] == "9"  # (39 x 95 + 39 x 66 + 15 x 10 HU) / 93 voxels - 60 = 9.1


def test_a_slicer_reference_with_a_segment_named_neither_liver_nor_tumor_is_refused_before_any_work(tmp_path):
    """A reference .seg.nrrd whose tumor segment is named 'Mass' (or Slicer's 'Segment_2') had it left out with a
    warning only: tumor Dice 'not measured', its voxels scored as background for every model (the script's audit).
    Such a segment holding voxels stops the script before any CT is segmented; named 'Liver tumor', it is read."""
    from test_segnrrd import LIVER, write_seg_nrrd_by_hand

    from LiverTumorSegLib.inference.batch import find_cases

    ph = make_phantom((12, 40, 44), (2.0, 2.0, 4.0), lesions=[PhantomLesion((5.0, 16.0, 14.0), 5.0, 15.0)],
                      noise_hu=0.0)
    (tmp_path / "cts").mkdir()
    (tmp_path / "refs").mkdir()
    write_volume(tmp_path / "cts" / "case0.nii.gz", ph.ct)
    geometry = ph.ct.geometry
    mass = {"ID": "Segment_2", "Name": "Mass", "Layer": "0", "LabelValue": "2"}
    write_seg_nrrd_by_hand(tmp_path / "refs" / "case0.seg.nrrd", [ph.labels], [LIVER, mass],
                           spacing=tuple(geometry.spacing), origin=tuple(geometry.origin))
    cases = find_cases(tmp_path / "cts", tmp_path / "pred")
    tumor_voxels = int(np.count_nonzero(ph.labels == 2))
    with pytest.raises(InputError, match=rf"holds segment\(s\) 'Mass' \({tumor_voxels} voxels\) named neither liver "
                                         r"nor tumor.*Name each tumor segment so that it holds 'tumor' or 'lesion'"):
        comparison.check_references(cases, comparison.reference_cases(str(tmp_path / "refs")), None)
    write_seg_nrrd_by_hand(tmp_path / "refs" / "case0.seg.nrrd", [ph.labels], [LIVER, dict(mass, Name="Liver tumor")],
                           spacing=tuple(geometry.spacing), origin=tuple(geometry.origin))
    comparison.check_references(cases, comparison.reference_cases(str(tmp_path / "refs")), None)


def _per_case(values):
    """per_case.csv rows from ``{case: {model: (liver Dice, tumor Dice)}}`` (a model without the case: empty)."""
    rows = []
    for case, by_model in values.items():
        row = {"case": case}
        for model in ("first", "other"):
            liver, tumor = by_model.get(model, ("", ""))
            row.update({f"{model}_dice_liver": str(liver), f"{model}_dice_tumor": str(tumor)})
        rows.append(row)
    return rows


def test_the_paired_comparison_is_the_mean_per_case_difference_with_evaluate_s_bootstrap_of_the_differences():
    from LiverTumorSegLib.metrics.bootstrap import mean_intervals

    cases = _per_case({"c1": {"first": (0.90, 0.50), "other": (0.95, 0.50)},
                       "c2": {"first": (0.80, 0.70), "other": (0.70, 0.60)},
                       "c3": {"first": (0.96, 1.0), "other": (0.96, 0.0)},
                       "c4": {"first": (0.91, 0.25), "other": (0.99, 0.75)},
                       "c5": {"first": (0.93, "nan")},  # no prediction of c5 by other: left out of the pair
                       "c6": {"other": (0.97, 0.4)}})  # nor c6, which the first did not predict
    paired = comparison.paired_comparison(cases, "first", "other")
    liver, tumor = paired["dice_liver"], paired["dice_tumor"]
    assert paired["first"] == "first"
    liver_differences = [0.95 - 0.90, 0.70 - 0.80, 0.96 - 0.96, 0.99 - 0.91]
    tumor_differences = [0.0, -0.1, -1.0, 0.5]
    assert liver["n"] == tumor["n"] == 4
    assert liver["mean_difference"] == pytest.approx(0.03 / 4, abs=1e-12)
    assert tumor["mean_difference"] == pytest.approx(-0.6 / 4, abs=1e-12)
    expected = mean_intervals({"dice_liver": liver_differences, "dice_tumor": tumor_differences})
    assert (liver["ci95_low"], liver["ci95_high"]) == pytest.approx(expected["dice_liver"], abs=1e-12)
    assert (tumor["ci95_low"], tumor["ci95_high"]) == pytest.approx(expected["dice_tumor"], abs=1e-12)
    assert liver["ci95_low"] < liver["mean_difference"] < liver["ci95_high"]
    assert (liver["better"], liver["worse"], liver["tied"]) == (2, 1, 1)
    assert (tumor["better"], tumor["worse"], tumor["tied"]) == (1, 2, 1)
    assert liver["cases_left_out"] == tumor["cases_left_out"] == ["c5", "c6"]


def test_a_paired_comparison_without_a_case_in_common_is_empty_and_with_one_case_has_no_interval():
    cases = _per_case({"c1": {"first": (0.9, 0.5)}, "c2": {"other": (0.8, 0.6)}})
    paired = comparison.paired_comparison(cases, "first", "other")
    assert paired["dice_liver"] == {"n": 0, "mean_difference": None, "ci95_low": None, "ci95_high": None,
                                    "better": 0, "worse": 0, "tied": 0, "cases_left_out": ["c1", "c2"]}
    one = comparison.paired_comparison(_per_case({"c1": {"first": (0.9, 0.5), "other": (0.8, 0.5)}}), "first",
                                       "other")["dice_liver"]
    assert one["mean_difference"] == pytest.approx(-0.1) and (one["ci95_low"], one["ci95_high"]) == (None, None)


def _paired_table(rows, cases):
    lines = comparison.comparison_table(comparison.with_paired_comparisons(rows, cases)).splitlines()
    return {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:-1] for line in lines[2:] if " | " in line}


def test_the_table_adds_the_liver_interval_and_the_paired_rows_after_the_verdict_and_keeps_the_rest():
    first = _table_row(dice_liver_ci95_low=0.9123, dice_liver_ci95_high=0.95678, dice_liver_n=4)
    other = _table_row()  # a summary.json from before evaluate gave intervals: no ci95 keys
    cases = _per_case({"c1": {"first": (0.90, 0.50), "other": (0.95, 0.50)},
                       "c2": {"first": (0.80, 0.70), "other": (0.70, 0.60)},
                       "c3": {"first": (0.96, 1.0)}})
    plain = comparison.comparison_table({"first": first, "other": other}).splitlines()
    table = comparison.comparison_table(comparison.with_paired_comparisons({"first": first, "other": other}, cases))
    assert table.splitlines()[:len(plain) - 6] == plain[:len(plain) - 6]  # issue 11's rows and the verdict as before
    cells = _paired_table({"first": first, "other": other}, cases)
    assert list(cells)[-6:] == [label.replace("{first}", "first") for label, _, _ in comparison.TABLE_ROWS[-6:]]
    assert cells["liver Dice mean: 95 % interval over cases (evaluate's bootstrap; n cases)"] == [
        "[0.9123, 0.9568] (n 4)", ""]
    liver = "paired with first: liver Dice, this model minus first: mean [95 % interval] (n cases both predicted)"
    paired = comparison.paired_comparison(cases, "first", "other")["dice_liver"]
    assert cells[liver] == ["", f"-0.0250 [{paired['ci95_low']:+.4f}, {paired['ci95_high']:+.4f}] (n 2)"]
    assert cells["paired with first: cases with a better / worse / tied liver Dice"] == ["", "1 / 1 / 0"]
    assert cells["paired with first: cases with a better / worse / tied tumor Dice"] == ["", "0 / 1 / 1"]
    assert cells["paired with first: reference cases left out (no number from this model or first)"] == [
        "", "1 (c3)"]
    # no case in common: empty cells (the left-out row says why); the first model not run: said, not a crash
    apart = _paired_table({"first": first, "other": other}, _per_case({"c1": {"first": (0.9, 0.5)},
                                                                       "c2": {"other": (0.8, 0.6)}}))
    assert apart[liver] == ["", ""] and apart[
        "paired with first: reference cases left out (no number from this model or first)"] == ["", "2 (c1, c2)"]
    failed = _paired_table({"first": {"error": "segment failed", "weights_sha256": "x"}, "other": other}, cases)
    assert failed[liver] == ["-", "n/a: the first model, first, was not evaluated"]
    alone = comparison.comparison_table(comparison.with_paired_comparisons({"first": first}, cases))
    assert "paired with" not in alone and "| [0.9123, 0.9568] (n 4) |" in alone  # one model: nothing to pair


def test_comparison_json_gives_the_paired_comparison_and_how_its_interval_was_taken(tmp_path):
    from LiverTumorSegLib.metrics import bootstrap

    out = tmp_path / "out"
    rows = {}
    for name, dice in (("m1", ("0.9", "0.8", "0.7")), ("m2", ("0.95", "0.8", "0.6"))):
        (out / name / "eval").mkdir(parents=True)
        (out / name / "eval" / "cases.csv").write_text(
            "case,dice_liver,dice_tumor,lesions_pred_no_overlap,volume_outside_ref_liver_ml\n"
            + "".join(f"p{i},{d},0.5,0,1.0\n" for i, d in enumerate(dice)))
        rows[name] = dict(_table_row(dice_liver_ci95_low=0.7, dice_liver_ci95_high=0.9, dice_liver_n=3),
                          implausible_cases=[])
    comparison.write_comparison(rows, out)
    saved = json.loads((out / "comparison.json").read_text())
    assert "paired_vs_first" not in saved["models"]["m1"] and "paired_vs_first" not in rows["m2"]
    liver = saved["models"]["m2"]["paired_vs_first"]["dice_liver"]
    assert liver["mean_difference"] == pytest.approx((0.05 + 0.0 - 0.1) / 3, abs=1e-12)
    assert (liver["better"], liver["worse"], liver["tied"], liver["n"]) == (1, 1, 1, 3)
    assert saved["paired_bootstrap"]["seed"] == bootstrap.BOOTSTRAP_SEED
    assert saved["paired_bootstrap"]["method"] == bootstrap.BOOTSTRAP_METHOD
    assert list(saved) == ["targets", "models", "paired_bootstrap"]
    assert "paired with m1: cases with a better / worse / tied liver Dice |  | 1 / 1 / 1 |" in (
        out / "comparison.md").read_text()


def test_a_model_row_reads_the_liver_dice_interval_from_summary_json_and_an_older_one_without_it(tmp_path):
    liver = {"mean": 0.95, "min": 0.93, "n": 5, "ci95_low": 0.94, "ci95_high": 0.96}
    summary = {"n_cases": 5, "metrics": {"dice_liver": liver, "dice_tumor": {"mean": 0.8}},
               "lesion_detection": {"pred_no_overlap": 0}, "volume_outside_ref_total_ml": {"liver": 5.0}}
    row = comparison.model_row(summary, tmp_path, reference_tumor_cases=5)
    assert (row["dice_liver_ci95_low"], row["dice_liver_ci95_high"], row["dice_liver_n"]) == (0.94, 0.96, 5)
    assert list(row)[-3:] == ["dice_liver_ci95_low", "dice_liver_ci95_high", "dice_liver_n"]  # added, after the rest
    assert row["meets_targets"] is True
    older = dict(summary, metrics=dict(summary["metrics"], dice_liver={"mean": 0.95, "min": 0.93, "n": 5}))
    older_row = comparison.model_row(older, tmp_path, reference_tumor_cases=5)
    assert older_row["dice_liver_ci95_low"] is None and older_row["meets_targets"] is True
    assert comparison._liver_interval_cell(older_row) == ""
    assert comparison._liver_interval_cell(row) == "[0.9400, 0.9600] (n 5)"


def test_the_liver_interval_cell_says_a_one_case_mean_has_no_interval_rather_than_staying_empty(tmp_path):
    """evaluate gives no interval (null) for a mean of fewer than 2 cases: the cell was empty, as it is for a
    summary.json written before evaluate gave intervals, which told the reader to look for an old evaluation."""
    liver = {"mean": 0.95, "min": 0.95, "n": 1, "ci95_low": None, "ci95_high": None}
    summary = {"n_cases": 1, "metrics": {"dice_liver": liver, "dice_tumor": {"mean": 0.8}},
               "lesion_detection": {"pred_no_overlap": 0}, "volume_outside_ref_total_ml": {"liver": 5.0}}
    row = comparison.model_row(summary, tmp_path, reference_tumor_cases=1)
    assert comparison._liver_interval_cell(row) == "no interval from 1 case"
    none = comparison.model_row(dict(summary, metrics=dict(summary["metrics"], dice_liver=dict(liver, n=0))),
                                tmp_path, reference_tumor_cases=1)
    assert comparison._liver_interval_cell(none) == "no interval from 0 cases"


@pytest.mark.parametrize("names", [("case0", "case0_ct"), ("volume-1", "volume-01")])
def test_cts_whose_label_maps_evaluate_would_pair_under_one_case_name_are_refused_before_any_work(tmp_path, names):
    """'n1' and 'n1_ct' in CTS: evaluate kept one prediction and dropped the other without a word (liver Dice 0.992
    reported where the dropped one read 0.501); 'volume-1' and 'volume-01': evaluate refused the folder as ambiguous
    after every model had segmented every CT (the held-out script audit). Refused before any work, naming them."""
    cts, labels = write_cases(tmp_path, count=1)
    shutil.copyfile(cts / "case0.nii.gz", cts / f"{names[1]}.nii.gz")
    (cts / "case0.nii.gz").rename(cts / f"{names[0]}.nii.gz")
    reference = comparison.evaluate_name(names[0])
    (labels / "case0.nii.gz").rename(labels / f"{reference}.nii.gz")
    assert comparison.evaluate_name(names[1]) == reference
    a = tiny_unet_package(tmp_path, name="a.safetensors").path
    calls = []
    with pytest.raises(InputError, match=rf"1 case name\(s\) of CTS would each name more than one CT .*case "
                                         rf"'{reference}': '.*\)\): evaluate reads") as refused:
        comparison.main([str(cts), "--ref", str(labels), "-o", str(tmp_path / "out"), "--models", "",
                         "--model", f"a={a}", "--device", "cpu"], runner=in_process(calls))
    assert f"'{names[0]}' ({cts / (names[0] + '.nii.gz')})" in str(refused.value)  # the case ids a CSV would rename
    assert f"'{names[1]}' ({cts / (names[1] + '.nii.gz')})" in str(refused.value)
    assert calls == []


def test_evaluate_says_which_file_of_a_case_it_reads_and_which_it_leaves_out(tmp_path, caplog):
    """'n1' and 'n1_ct' in a --pred folder: evaluate read 'n1' and left 'n1_ct' out without a word (the held-out
    script audit); it says so now."""
    import logging

    from LiverTumorSegLib.commands.evaluate import list_cases

    cts, labels = write_cases(tmp_path, count=1)
    shutil.copyfile(labels / "case0.nii.gz", labels / "case0_ct.nii.gz")
    with caplog.at_level(logging.WARNING):
        cases = list_cases(labels, "--pred")
    assert cases == {"case0": labels / "case0.nii.gz"}
    assert "holds 2 files for case 'case0': 'case0.nii.gz' is read, and 'case0_ct.nii.gz' left out" in caplog.text
    # a CT beside its label map, each named for its role, is no news (LiTS' volume-N and segmentation-N: one line a
    # case in --images; the review), nor a CT beside an unmarked label map in --images
    caplog.clear()
    data = tmp_path / "lits"
    data.mkdir()
    shutil.copyfile(labels / "case0.nii.gz", data / "segmentation-0.nii.gz")
    shutil.copyfile(cts / "case0.nii.gz", data / "volume-0.nii.gz")
    shutil.copyfile(cts / "case0.nii.gz", data / "case1.nii.gz")
    shutil.copyfile(labels / "case0.nii.gz", data / "case1_liver.nii.gz")
    with caplog.at_level(logging.WARNING):
        assert list_cases(data, "--images") == {"0": data / "volume-0.nii.gz", "case1": data / "case1.nii.gz"}
        assert list_cases(data, "--ref") == {"0": data / "segmentation-0.nii.gz", "case1": data / "case1_liver.nii.gz"}
    assert "holds 2 files" not in caplog.text


def test_two_label_maps_of_one_case_or_references_in_subfolders_beside_files_are_refused(tmp_path):
    """--ref holding 'case_012.nii.gz' (liver and tumor) and 'case_012_liver.nii.gz' (a liver mask) was scored
    against the second without a word (tumor case made tumor-free), and 'case_010_seg.nii.gz', a model's own
    prediction saved beside the references, scored Dice 1.0; references in labels/hospB/ beside labels/*.nii.gz
    were left out, the verdict judged on fewer cases (the held-out script audit). Refused; a CT beside its label
    map (LiTS' one-folder layout) is still paired."""
    ph = make_phantom((6, 24, 24), (2.0, 2.0, 4.0), noise_hu=0.0)
    refs = tmp_path / "refs"
    refs.mkdir()
    write_label_map(refs / "case_012.nii.gz", ph.labels, ph.ct.geometry)
    write_label_map(refs / "case_012_liver.nii.gz", (ph.labels > 0).astype(np.uint8), ph.ct.geometry)
    with pytest.raises(InputError, match=r"holds more than one label map for 1 case\(s\) \(case 'case_012': "
                                         r"'case_012.nii.gz', 'case_012_liver.nii.gz'\)"):
        comparison.reference_cases(str(refs))
    (refs / "case_012_liver.nii.gz").unlink()
    write_volume(refs / "case_012_ct.nii.gz", ph.ct)  # its CT beside it: no second label map
    write_volume(refs / "case_013.nii.gz", ph.ct)  # a CT named as its case, beside its label map
    write_label_map(refs / "case_013_seg.nii.gz", ph.labels, ph.ct.geometry)
    assert {name: path.name for name, path in comparison.reference_cases(str(refs)).items()} == {
        "case_012": "case_012.nii.gz", "case_013": "case_013_seg.nii.gz"}
    (refs / "hospB").mkdir()
    write_label_map(refs / "hospB" / "case_010.nii.gz", ph.labels, ph.ct.geometry)
    with pytest.raises(InputError, match=r"holds label maps of its own and 1 more in subfolders \('hospB/case_010"):
        comparison.reference_cases(str(refs))


def test_segment_and_evaluate_run_this_checkouts_library_from_any_working_folder(monkeypatch):
    """Run from another folder, the script's segment and evaluate imported whatever LiverTumorSegLib was installed:
    the checks and the table's numbers could come from two versions of the code (the held-out script audit)."""
    import os

    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = comparison.child_environment()
    assert env["PYTHONPATH"].split(os.pathsep) == [str(comparison.ROOT), "/elsewhere"]
    from LiverTumorSegLib.parent_watch import PARENT_VARIABLE
    assert env[PARENT_VARIABLE] == str(os.getpid())  # and the child still stops with the script
