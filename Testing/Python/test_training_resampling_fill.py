"""Training with a CT resampled onto another grid with a fill outside its original field of view (SimpleITK's default
0 HU): the slice cache gives the network -1024 HU there, as ``segment`` does
(:mod:`LiverTumorSegLib.inference.resampling_fill`), and the training log names the case with the fill's volume.
Before, the network learned 0 HU tissue labelled background there, which ``segment`` never shows it."""
import json
from pathlib import Path

import numpy as np
import pytest

from LiverTumorSegLib.io import write_label_map, write_volume
from LiverTumorSegLib.orientation import canonicalize
from LiverTumorSegLib.phantom import make_phantom
from LiverTumorSegLib.preprocessing import PreprocessingConfig, SlicePreprocessor
from LiverTumorSegLib.training.datasets import Case
from LiverTumorSegLib.training.slice_cache import build_slice_cache
from LiverTumorSegLib.volume import CTVolume

FILL_FROM_ROW = 32  # rows 32-39 of the 40 (y) hold the fill: 8 x 44 pixels in each of 6 slices
VOXEL_ML = 0.7 * 0.7 * 3.0 / 1000.0


def _config():
    return PreprocessingConfig(channels=[{"kind": "window", "level": 40.0, "width": 400.0}], context_slices=1,
                               crop_to_body=False, size_multiple=8, target_spacing_mm=None)  # native pixels


def _case(tmp_path, fill_hu):
    """A phantom CT (6 x 40 x 44, 0.7 x 0.7 x 3 mm, 20 HU noise) with rows from :data:`FILL_FROM_ROW` on set to
    ``fill_hu`` (None: as it is) and no label there, written as a case; and that CT with -1024 there."""
    phantom = make_phantom((6, 40, 44), (0.7, 0.7, 3.0), noise_hu=20.0, seed=0)
    hu, labels = phantom.ct.array.copy(), phantom.labels.copy()
    as_air = hu.copy()
    if fill_hu is not None:
        hu[:, FILL_FROM_ROW:], as_air[:, FILL_FROM_ROW:], labels[:, FILL_FROM_ROW:] = fill_hu, -1024, 0
    ct = CTVolume(hu, phantom.ct.geometry)
    image = write_volume(tmp_path / "ct.nii.gz", ct)
    label = write_label_map(tmp_path / "lab.nii.gz", labels, ct.geometry)
    return Case("c", "p", str(image), str(label), "csv"), CTVolume(as_air, ct.geometry), ct


def test_a_training_ct_s_0_hu_fill_is_cached_as_air_and_logged(tmp_path):
    case, as_air, ct = _case(tmp_path, 0)
    preprocessor = SlicePreprocessor(_config())
    said = []
    (cached,) = build_slice_cache([case], preprocessor, tmp_path / "cache", log=said.append)
    expected, _ = preprocessor.spatial_forward(canonicalize(as_air)[0].array, ct.spacing_zyx)
    as_read, _ = preprocessor.spatial_forward(canonicalize(ct)[0].array, ct.spacing_zyx)
    assert not np.allclose(as_read, expected, atol=1.0)  # the fill reaches the network grid
    np.testing.assert_allclose(cached.hu, expected, atol=1e-3)
    fill_ml = 6 * 8 * 44 * VOXEL_ML
    assert cached.resampling_fill == {"values_hu": [0.0], "volume_ml": round(fill_ml, 1), "read_as_hu": -1024.0}
    named = [line for line in said if line.startswith("case c: ")]
    assert len(named) == 1 and f"{fill_ml:.0f} mL of its CT hold exactly 0 HU" in named[0]
    assert "-1024 HU (air)" in named[0]
    # reused from the cache, the case is named again in that run's log
    said.clear()
    (again,) = build_slice_cache([case], preprocessor, tmp_path / "cache", log=said.append)
    assert not [line for line in said if line.startswith("caching")]  # served, not rebuilt
    assert [line for line in said if line.startswith("case c: ")] == named
    np.testing.assert_allclose(again.hu, expected, atol=1e-3)


@pytest.mark.parametrize("fill_hu", [None, -1024])
def test_a_training_ct_without_a_0_hu_fill_is_cached_as_it_is(tmp_path, fill_hu):
    case, _, ct = _case(tmp_path, fill_hu)
    preprocessor = SlicePreprocessor(_config())
    said = []
    (cached,) = build_slice_cache([case], preprocessor, tmp_path / "cache", log=said.append)
    as_read, _ = preprocessor.spatial_forward(canonicalize(ct)[0].array, ct.spacing_zyx)
    np.testing.assert_allclose(cached.hu, as_read, atol=1e-3)
    assert cached.resampling_fill is None and not [line for line in said if line.startswith("case c: ")]


def test_an_entry_cached_before_fills_were_read_is_cached_again(tmp_path):
    """An entry whose sidecar lacks ``resampling_fill`` was made by a version that cached the fill as it is: it is
    rebuilt, not served (and the cache key's version changed with this, so a whole older cache is not used)."""
    case, as_air, ct = _case(tmp_path, 0)
    preprocessor = SlicePreprocessor(_config())
    (cached,) = build_slice_cache([case], preprocessor, tmp_path / "cache")
    meta_path = Path(cached.hu_path[:-len(".hu.npy")] + ".json")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    del meta["resampling_fill"]
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    said = []
    (again,) = build_slice_cache([case], preprocessor, tmp_path / "cache", log=said.append)
    assert [line for line in said if line.startswith("caching")]
    assert again.resampling_fill is not None


def test_the_package_records_the_cases_with_a_fill_and_models_json_shows_them(tmp_path, monkeypatch, capsys):
    """A trained package did not say which of its cases had a resampling's fill (only the training log named them):
    ``training.cases_with_resampling_fill`` now holds each such case's record and whether it trained or validated,
    ``{}`` when none did, and ``livertumorseg models --json`` shows it as ``training_cases_with_resampling_fill``."""
    import torch

    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.package import read_package_metadata
    from LiverTumorSegLib.training.config import TrainConfig
    from LiverTumorSegLib.training.trainer import train

    torch.manual_seed(0)
    torch.set_num_threads(1)
    rows = ["image,label,patient,case"]
    for name, fill_hu in (("fill", 0), ("plain", None)):
        (tmp_path / name).mkdir()
        case, _, _ = _case(tmp_path / name, fill_hu)
        rows.append(f"{case.image_path},{case.label_path},p_{name},{name}")
    (tmp_path / "cases.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (tmp_path / "models").mkdir()
    config = TrainConfig.from_dict(dict(
        data=str(tmp_path / "cases.csv"), model="unet", model_options={"channels": [4, 8, 16]},
        preprocessing={"channels": [{"kind": "window", "level": 40, "width": 400}], "context_slices": 1,
                       "target_spacing_mm": None, "size_multiple": 16, "crop_to_body": False},
        epochs=1, iterations_per_epoch=1, batch_size=2, patch_size=32, num_workers=0, val_fraction=0.5,
        output=str(tmp_path / "models" / "filled.safetensors"), cache_dir=str(tmp_path / "cache"),
        progress_bar=False, tensorboard=False, seed=3))
    result = train(config, log=lambda s: None)
    fill_ml = round(6 * 8 * 44 * VOXEL_ML, 1)
    used_for = "training" if "fill" in result.train_cases else "validation"
    expected = {"fill": {"values_hu": [0.0], "volume_ml": fill_ml, "read_as_hu": -1024.0, "used_for": used_for}}
    assert read_package_metadata(result.package_path)["training"]["cases_with_resampling_fill"] == expected
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(tmp_path / "models"))
    capsys.readouterr()
    assert main(["models", "--json"]) == 0
    listed = {e["name"]: e for e in json.loads(capsys.readouterr().out)["installed"]}
    assert listed["filled"]["training_cases_with_resampling_fill"] == expected
    assert all(e["training_cases_with_resampling_fill"] is None for name, e in listed.items() if name != "filled")
    assert main(["models"]) == 0
    assert (f"note: 1 training/validation case(s) held a resampling's fill outside their original field of view, "
            f"given to the network as -1024 HU (air): fill ({fill_ml:g} mL, {used_for})") in capsys.readouterr().out
