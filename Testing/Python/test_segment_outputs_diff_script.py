"""benchmarks/segment_outputs_diff.py: two folders of segment outputs compared (images voxel by voxel, reports
without the run's timings)."""
import json
import shutil

import numpy as np

from script_helpers import ROOT, load_script

DATA = ROOT / "Testing" / "Data"


def _two_folders(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, seconds in ((a, 1.5), (b, 2.5)):
        folder.mkdir()
        shutil.copy(DATA / "ct3slice_liver_seg.nii.gz", folder / ".hidden_labels.nii.gz")  # a dot name counts too
        # the bf16 check's seconds, the library's version and the package's path differ between two runs or
        # checkouts and say nothing of the result: two identical runs on a bf16 CPU were DIFFERENT (helper-402)
        report = {"liver_volume_ml": 1234.5, "timings_s": {"read": seconds}, "lesions": [{"id": 1}],
                  "precision": {"check": {"bf16_seconds": seconds, "fp32_seconds": 2 * seconds, "passed": True}},
                  "library_version": f"0.6.{int(seconds)}", "model_path": str(folder / "m.safetensors"),
                  "options": {"model": str(folder / "m.safetensors"), "device": "cpu"}}
        (folder / "ct.json").write_text(json.dumps(report))
    return a, b


def test_the_same_outputs_are_identical_whatever_their_timings(tmp_path, capsys):
    script = load_script("benchmarks/segment_outputs_diff.py", "segment_outputs_diff_script")
    a, b = _two_folders(tmp_path)
    assert script.main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert ".hidden_labels.nii.gz: identical" in out and "ct.json: identical" in out


def test_a_changed_voxel_a_changed_number_or_a_missing_file_differs(tmp_path, capsys):
    from LiverTumorSegLib.io import read_volume, write_volume
    from LiverTumorSegLib.volume import CTVolume

    script = load_script("benchmarks/segment_outputs_diff.py", "segment_outputs_diff_script")
    a, b = _two_folders(tmp_path)
    (b / "ct.json").write_text((b / "ct.json").read_text().replace("1234.5", "1234.6"))
    assert script.compare_folders(a, b) == {".hidden_labels.nii.gz": True, "ct.json": False}
    labels = read_volume(b / ".hidden_labels.nii.gz")
    changed = np.array(labels.array, copy=True)
    changed.flat[0] = 1 - changed.flat[0]
    write_volume(b / ".hidden_labels.nii.gz", CTVolume(changed, labels.geometry), overwrite=True)
    (a / "only_here.json").write_text("{}")
    assert script.compare_folders(a, b) == {".hidden_labels.nii.gz": False, "ct.json": False, "only_here.json": False}
    assert script.main([str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "only_here.json: DIFFERENT\n" in out and "ct.json: DIFFERENT (liver_volume_ml)" in out
    report = json.loads((b / "ct.json").read_text())
    report["precision"]["check"]["passed"] = False
    report["lesions"][0]["id"] = 2
    report["options"]["device"] = "cuda"  # an option other than the package's path is compared
    (b / "ct.json").write_text(json.dumps(report))
    assert script.report_differences(a / "ct.json", b / "ct.json") == ["lesions[0].id", "liver_volume_ml",
                                                                      "options.device", "precision.check.passed"]
