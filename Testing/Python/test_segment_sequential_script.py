"""benchmarks/segment_sequential.py: the model is loaded before the read, and its load time is reported."""
import json

import numpy as np
import pytest

pytest.importorskip("torch")
from inference_helpers import corner_phantom, tiny_unet_package  # noqa: E402
from script_helpers import load_script  # noqa: E402


def test_loads_first_and_reports_the_load_and_the_same_labels(tmp_path, monkeypatch):
    from LiverTumorSegLib.inference import SegmentationOptions, Segmenter
    from LiverTumorSegLib.io import read_label_map, write_volume
    from LiverTumorSegLib.models import monai_import

    monkeypatch.setitem(monai_import._state, "hide", monai_import._state["hide"])  # the script sets it; undo after

    script = load_script("benchmarks/segment_sequential.py", "segment_sequential")
    package = tiny_unet_package(tmp_path)
    ct = write_volume(tmp_path / "ct.nii.gz", corner_phantom().ct)
    assert script.main([str(ct), str(tmp_path / "seq.nii.gz"), str(tmp_path / "seq.json"), "--model",
                        str(package.path)]) == 0
    report = json.loads((tmp_path / "seq.json").read_text())
    assert report["model_load_s"]["during_read"] is False  # loaded before the read, not beside it
    assert report["timings_s"]["model_load"] > 0.0 and report["timings_s"]["read"] > 0.0
    Segmenter(SegmentationOptions(model=str(package.path), device="cpu")).segment_file(ct, tmp_path / "ref.nii.gz")
    np.testing.assert_array_equal(read_label_map(tmp_path / "seq.nii.gz").array,
                                  read_label_map(tmp_path / "ref.nii.gz").array)
