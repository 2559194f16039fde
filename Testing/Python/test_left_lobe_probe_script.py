"""scripts/left_lobe_probe.py: the probe of a region a fold model leaves out, when there is none to probe."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from script_helpers import ROOT, load_script  # noqa: E402


@pytest.fixture(scope="module")
def probe():
    return load_script("scripts/left_lobe_probe.py", "left_lobe_probe_under_test")


def test_the_largest_left_out_piece_deeper_than_3_px_or_none(probe):
    ref = np.zeros((1, 30, 30), bool)
    ref[0, 2:28, 2:28] = True
    assert probe.largest_left_out_region(ref, ref.copy()) is None  # all found
    predicted = ref.copy()
    predicted[0, 2:5, 2:28] = False  # left out within 3 px of the border only
    assert probe.largest_left_out_region(ref, predicted) is None
    predicted[0, 10:14, 10:14] = False
    predicted[0, 18:28, 18:28] = False  # up to the border
    region = probe.largest_left_out_region(ref, predicted)
    assert region.sum() == 7 * 7 and region[0, 18:25, 18:25].all()  # the larger hole, less its 3 px by the border


def test_a_model_that_leaves_out_nothing_deep_is_said_and_stops_cleanly(probe, capsys):
    """Every small test CT: it failed with 'ValueError: attempt to get argmax of an empty sequence'."""
    data = ROOT / "Testing" / "Data"
    assert probe.main(["--ct", str(data / "ct3slice_ct.nii.gz"), "--ref", str(data / "ct3slice_liver_seg.nii.gz"),
                       "default"]) == 0
    assert "there is no left-out region to probe" in capsys.readouterr().out


def test_a_missing_ct_is_one_line(probe, tmp_path, capsys):
    assert probe.main(["--ct", str(tmp_path / "none.nii.gz"), "--ref", str(tmp_path / "ref.nii.gz"), "default"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
