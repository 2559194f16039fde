"""benchmarks/lesion_confidence.py: per-lesion statistics and the threshold table on hand-made maps."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from script_helpers import ROOT, load_script  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))  # the script imports robustness.py from its own folder
lc = load_script("benchmarks/lesion_confidence.py", "lesion_confidence_bench")


def test_lesions_of_known_components():
    labels = np.ones((10, 20, 20), dtype=np.uint8)
    probability = np.zeros(labels.shape, dtype=np.uint8)
    truth = np.zeros(labels.shape, dtype=bool)
    labels[1:3, 1:3, 1:3] = 2            # 8 voxels at p 0.2, touches the truth
    probability[1:3, 1:3, 1:3] = 51
    truth[2, 2, 2] = True
    labels[6:8, 10:15, 10:12] = 2        # 20 voxels, half at p 1.0 and half at 0.6: mean 0.8, max 1.0, false
    probability[6:8, 10:15, 10:11] = 255
    probability[6:8, 10:15, 11:12] = 153
    found = lc.lesions_of(labels, probability, truth, voxel_ml=0.5)
    # p90: rank floor(0.9 * 19) = 17 of the 20 sorted values (10 at 0.6, then 10 at 1.0); core: the 10 at 1.0
    assert found == [{"ml": 4.0, "mean_p": 0.2, "p90": 0.2, "max_p": 0.2, "core_ml": 0.0, "slices": 2, "true": True},
                     {"ml": 10.0, "mean_p": 0.8, "p90": 1.0, "max_p": 1.0, "core_ml": 5.0, "slices": 2,
                      "true": False}]
    assert lc.lesions_of(np.ones((3, 3, 3), np.uint8), np.zeros((3, 3, 3), np.uint8), truth[:3, :3, :3], 1.0) == []


def test_component_percentile_takes_the_lower_rank_per_component():
    """Two components in one map, values given out of order: the 90th percentile of ten values 0..9 (x 25) is the
    one at rank floor(0.9 * 9) = 8; of one voxel, that voxel; p90 at 0 is each component's minimum."""
    components = np.zeros((3, 4, 5), dtype=np.int32)
    probability = np.zeros(components.shape, dtype=np.uint8)
    components[0, 0:2, 0:5] = 1
    probability[0, 0:2, 0:5] = (np.array([7, 2, 9, 0, 5, 1, 8, 3, 6, 4]) * 25).reshape(2, 5)
    components[2, 3, 4] = 2
    probability[2, 3, 4] = 255
    probability[1] = 200                      # outside every component: never read
    assert lc.component_percentile(components, 2, probability, 0.9).tolist() == [200 / 255, 1.0]
    assert lc.component_percentile(components, 2, probability, 0.0).tolist() == [0.0, 1.0]
    assert lc.component_percentile(components, 2, probability, 1.0).tolist() == [225 / 255, 1.0]


def test_threshold_table_counts_what_the_step_would_remove():
    rows = [{"ml": 0.3, "mean_p": 0.55, "true": False}, {"ml": 0.3, "mean_p": 0.62, "true": False},
            {"ml": 9.0, "mean_p": 0.50, "true": False},   # too large to be removed
            {"ml": 1.0, "mean_p": 0.68, "true": True}, {"ml": 2.0, "mean_p": 0.90, "true": True}]
    text = lc.threshold_table(rows, [0.6, 0.7], max_ml=5.0)
    lines = text.splitlines()
    assert "2 true and 3 false lesions; lowest true mean p: 0.680" in lines[0]
    assert lines[2].split() == ["0.60", "1", "of", "3", "0", "of", "2", "0.00"]
    assert lines[3].split() == ["0.70", "2", "of", "3", "1", "of", "2", "1.00"]


def test_bad_inputs_are_one_line_errors_before_any_inference(tmp_path, capsys, monkeypatch):
    """An unknown perturbation raised a KeyError traceback after the earlier ones had run; a missing package a
    raw traceback; no --pair and no --all-cases printed nothing and exited 0."""
    from test_robustness_benchmark import write_case

    write_case(tmp_path)
    monkeypatch.setattr(lc, "run_package", lambda *a, **k: pytest.fail("inference ran before the refusal"))
    with pytest.raises(SystemExit) as exit_info:
        lc.main(["--data", str(tmp_path)])
    assert exit_info.value.code == 2 and "nothing to run" in capsys.readouterr().err
    assert lc.main(["--data", str(tmp_path), "--all-cases", "default", "--perturbations", "baseline,zoom9"]) == 2
    assert "--perturbations ['zoom9']" in capsys.readouterr().err
    assert lc.main(["--data", str(tmp_path), "--all-cases", str(tmp_path / "missing.safetensors")]) == 2
    assert "missing.safetensors" in capsys.readouterr().err
    assert lc.main(["--data", str(tmp_path), "--pair", "default=nope"]) == 2
    assert "no case 'nope'" in capsys.readouterr().err
    # --json was written after the run with a bare write_text: it replaced the data (or any file) and a folder
    # that did not exist ended in a traceback after the whole benchmark
    ct = tmp_path / "case1_ct.nii.gz"
    before = ct.read_bytes()
    assert lc.main(["--data", str(tmp_path), "--all-cases", "default", "--json", str(ct)]) == 2
    assert "must end in .json" in capsys.readouterr().err and ct.read_bytes() == before
    assert lc.main(["--data", str(tmp_path), "--all-cases", "default", "--json",
                    str(tmp_path / "nowhere" / "lc.json")]) == 2
    assert "error:" in capsys.readouterr().err


def test_seed_slices_and_precision_reach_the_cases_and_the_runs(tmp_path, monkeypatch):
    """--seed and --max-slices draw the cases as robustness.py with the same options does (so its rows can be read
    lesion by lesion), and --precision reaches the network; before, every run drew seed 0 on whole scans."""
    from test_robustness_benchmark import write_case

    write_case(tmp_path)
    loaded, ran = [], []
    real_load = lc.robustness.load_bench_case

    def load(case, seed=0, max_slices=None, **kwargs):
        loaded.append((seed, max_slices))
        return real_load(case, seed, max_slices, **kwargs)

    monkeypatch.setattr(lc.robustness, "load_bench_case", load)
    monkeypatch.setattr(lc, "run_package", lambda path, cases, perturbations, device, seed=0, precision="auto":
                        ran.append((len(cases), perturbations, device, seed, precision)) or [])
    assert lc.main(["--data", str(tmp_path), "--all-cases", "default", "--perturbations", "baseline",
                    "--seed", "4", "--max-slices", "6", "--precision", "fp32"]) == 0
    assert loaded == [(4, 6)] and ran == [(1, ["baseline"], "cpu", 4, "fp32")]
    loaded.clear(), ran.clear()
    assert lc.main(["--data", str(tmp_path), "--all-cases", "default", "--perturbations", "baseline"]) == 0
    assert loaded == [(0, None)] and ran == [(1, ["baseline"], "cpu", 0, "auto")]
