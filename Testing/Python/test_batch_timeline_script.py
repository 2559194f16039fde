"""benchmarks/batch_timeline.py: every case's read, network and finishing appear once, in pipeline order."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from inference_helpers import tiny_unet_package  # noqa: E402
from script_helpers import load_script  # noqa: E402
from test_segment_batch import write_phantoms  # noqa: E402


def test_timeline_of_a_three_case_batch(tmp_path, capsys):
    torch.manual_seed(0)
    np.random.seed(0)
    script = load_script("benchmarks/batch_timeline.py", "batch_timeline")
    package = tiny_unet_package(tmp_path)
    write_phantoms(tmp_path / "cts", 3)
    assert script.main([str(tmp_path / "cts"), "--model", str(package.path), "--json",
                        str(tmp_path / "t.json")]) == 0
    result = script.batch_timeline(tmp_path / "cts", model=str(package.path))
    events = {(e["kind"], e["case"]): e for e in result["events"]}
    assert len(result["events"]) == 9 and result["cases"] == 3 and result["wall_s"] > 0
    for i in range(3):
        read, network, finish = (events[(kind, f"ct_{i}")] for kind in ("read", "network", "finish"))
        assert read["end"] <= network["start"] + 1e-6 <= network["end"] <= finish["start"] + 1e-6
        assert set(network["stages"]) >= {"preprocess", "network", "restore"}
    assert "3 cases: wall" in capsys.readouterr().out and (tmp_path / "t.json").exists()
