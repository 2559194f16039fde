"""scripts/metal_streak_lesions.py: a lesion's elongation and its alignment with the metal, on shapes drawn by hand."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from script_helpers import load_script  # noqa: E402

probe = load_script("scripts/metal_streak_lesions.py", "metal_streak_lesions_script")


def _grid():
    shape = (3, 60, 60)
    metal = np.zeros(shape, dtype=bool)
    metal[:, 50:54, 28:32] = True  # the metal's centre at (y, x) = (51.5, 29.5)
    return shape, metal, np.zeros(shape, dtype=np.float32)


def test_a_bar_pointing_at_the_metal_is_caught_and_one_across_it_is_not():
    shape, metal, hu = _grid()
    toward = np.zeros(shape, dtype=bool)
    toward[:, 10:30, 28:32] = True  # 20 x 4 px along y, on the line through the metal (x 28-31)
    across = np.zeros(shape, dtype=bool)
    across[:, 18:22, 20:40] = True  # 4 x 20 px along x: at right angles to that line
    truth = np.zeros(shape, dtype=bool)
    truth[1, 19, 25] = True  # one true-tumor voxel inside the second bar
    spacing = (5.0, 1.0, 1.0)
    a = probe.describe(toward, hu, metal, spacing, 0.0, truth, 0.001)
    b = probe.describe(across, hu, metal, spacing, 0.0, truth, 0.001)
    # a uniform 20 x 4 bar: variances (20^2 - 1) / 12 and (4^2 - 1) / 12, elongation sqrt(399 / 15) = 5.16
    assert a["elongation"] == pytest.approx(5.16, abs=0.01) and a["radial_cos"] == pytest.approx(1.0, abs=1e-3)
    assert a["distance_to_metal_mm"] == pytest.approx(51.5 - 19.5, abs=0.01)  # centre rows 19.5 and 51.5
    assert a["ml"] == pytest.approx(3 * 20 * 4 * 0.001) and a["slices"] == 3 and not a["touches_true_tumor"]
    assert b["radial_cos"] == pytest.approx(0.0, abs=0.05) and b["touches_true_tumor"]
    assert probe.caught(a) and not probe.caught(b)


def test_a_round_lesion_is_not_caught_whatever_its_direction():
    shape, metal, hu = _grid()
    yy, xx = np.mgrid[:60, :60]
    disc = np.broadcast_to((yy - 15) ** 2 + (xx - 30) ** 2 <= 36, shape).copy()
    row = probe.describe(disc, hu, metal, (5.0, 1.0, 1.0), 0.0, np.zeros(shape, dtype=bool), 0.001)
    assert row["elongation"] == pytest.approx(1.0, abs=0.05) and not probe.caught(row)


def test_bad_options_data_and_json_are_one_line_errors_before_any_work(tmp_path, capsys, monkeypatch):
    """--max-slices -3 gave an empty result with exit 0 (robustness.py refuses it), --seeds x and a missing --data
    were tracebacks, and --json replaced any file: each is one line now, before the model is loaded."""
    monkeypatch.setattr(probe, "load_model_package", lambda *a: pytest.fail("the model was loaded"))
    data = str(Path(__file__).resolve().parents[1] / "Data")
    existing = tmp_path / "rows.json"
    existing.write_text("mine")
    for argv, said in ((["--data", data, "--max-slices", "-3"], "--max-slices must be >= 0"),
                       (["--data", data, "--seeds", "x"], "--seeds 'x'"),
                       (["--data", str(tmp_path / "nonexist")], "does not exist"),
                       (["--data", data, "--json", str(existing)], "--overwrite"),
                       (["--data", data, "--json", str(tmp_path / "no" / "rows.json")], "does not exist")):
        assert probe.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and said in err and "Traceback" not in err, (argv, err)
    assert existing.read_text() == "mine"
