"""benchmarks/finish_steps.py: saved network outputs give finish's report to compare and each step's time."""
import numpy as np

from script_helpers import ROOT, load_script

DATA = ROOT / "Testing" / "Data"


def _saved_output(tmp_path, name="ct3slice"):
    """The 3-slice CT with its reference liver as the 'network' labels (no network run), pickled as save does."""
    from LiverTumorSegLib.inference.segmenter import NetworkOutput
    from LiverTumorSegLib.io import read_label_map, read_volume

    script = load_script("benchmarks/finish_steps.py", "finish_steps_script")
    volume = read_volume(DATA / "ct3slice_ct.nii.gz")
    labels = np.asarray(read_label_map(DATA / "ct3slice_liver_seg.nii.gz").array, dtype=np.uint8)
    output = NetworkOutput(labels=labels, probability=None, facts={"device": "cpu"}, timings={})
    saved = tmp_path / "saved"
    saved.mkdir()
    script.save_output(volume, output, saved / f"{name}.pkl")
    return script, saved


def test_report_then_diff_finds_the_same_run_identical_and_a_changed_number_different(tmp_path, capsys):
    from LiverTumorSegLib.inference import Segmenter

    script, saved = _saved_output(tmp_path)
    segmenter = Segmenter()  # finish needs no network
    assert script.write_reports(saved, tmp_path / "a", segmenter) == ["ct3slice"]
    script.write_reports(saved, tmp_path / "b", segmenter)
    record = (tmp_path / "a" / "ct3slice.json").read_text()
    assert '"liver_volume_ml"' in record and '"labels_sha256"' in record and '"timings_s"' not in record
    assert script.main(["diff", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    (tmp_path / "b" / "ct3slice.json").write_text(record.replace('"liver_volume_ml": ', '"liver_volume_ml": 1'))
    assert script.main(["diff", str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    assert "ct3slice.json: DIFFERENT" in capsys.readouterr().out


def test_time_prints_every_step_of_finish(tmp_path, capsys):
    script, saved = _saved_output(tmp_path)
    assert script.main(["time", str(saved), "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    for step in ("postprocess_labels", "lesion_report", "liver_ras_xz", "spine_sample", "fluid_in_liver", "metal",
                 "contrast_phase", "sum"):
        assert f"  {step}" in out, out
