"""Preview PNG and the ``livertumorseg preprocess`` command."""
import json

import numpy as np
import pytest

from LiverTumorSegLib.errors import InputError, OutputExistsError
from LiverTumorSegLib.phantom import make_phantom
from LiverTumorSegLib.preprocessing import PreprocessingConfig, render_preview
from LiverTumorSegLib.preprocessing.preview import choose_preview_slices

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    """(width, height) from the IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_render_preview_writes_png_grid(tmp_path):
    ph = make_phantom((8, 48, 48))
    out = render_preview(ph.ct, PreprocessingConfig.preset("two_windows_histscaled"), tmp_path / "p.png", n_slices=2,
                         labels=ph.labels)
    w, h = png_size(out)
    assert out.stat().st_size > 5000
    assert w == 4 * 260 and h == 2 * 270 + 60  # 1 + 3 channel columns, 2 rows at 100 dpi
    with pytest.raises(OutputExistsError):
        render_preview(ph.ct, "default", out)
    render_preview(ph.ct, None, out, n_slices=1, overwrite=True)
    assert png_size(out)[0] == 4 * 260
    assert not [p for p in tmp_path.iterdir() if p.name != "p.png"]  # no temp files left


def test_render_preview_rejects_bad_output_and_slices(tmp_path):
    ph = make_phantom((4, 32, 32))
    with pytest.raises(InputError):
        render_preview(ph.ct, "default", tmp_path / "p.jpg")
    with pytest.raises(InputError):
        render_preview(ph.ct, "default", tmp_path / "p.png", slices=[9])


def test_choose_preview_slices_follow_liver_or_body():
    hu = np.full((20, 8, 8), -1000, np.int16)
    hu[5:15] = 40
    assert choose_preview_slices(hu, 3) == [7, 10, 12]
    labels = np.zeros(hu.shape, np.uint8)
    labels[10:13, 2:4, 2:4] = 1
    assert choose_preview_slices(hu, 1, labels) == [11]
    assert choose_preview_slices(hu[:2], 5) == [0, 1]


def test_preprocess_command_on_nifti(tmp_path, capsys):
    from LiverTumorSegLib.cli import main
    out = tmp_path / "prev.png"
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"channels": [{"kind": "window", "preset": "liver"}, {"kind": "zscore"}],
                               "context_slices": 0, "target_spacing_mm": 3.0}))
    rc = main(["preprocess", "Testing/Data/example_ct_sm.nii.gz", "--config", str(cfg), "-o", str(out),
               "--slices", "2"])
    text = capsys.readouterr().out
    assert rc == 0 and png_size(out)[1] == 2 * 270 + 60
    assert f"wrote {out}" in text and "channel 1: zscore (body)" in text and "2 channels" in text
    assert main(["preprocess", "Testing/Data/example_ct_sm.nii.gz", "-o", str(out)]) == 2  # exists
    assert "--overwrite" in capsys.readouterr().err
    cfg.write_text(json.dumps({"chanels": []}))
    assert main(["preprocess", "Testing/Data/example_ct_sm.nii.gz", "--config", str(cfg), "-o",
                 str(tmp_path / "x.png")]) == 2
    assert "chanels" in capsys.readouterr().err
    cfg.write_text(json.dumps({"channels": [{"kind": "window", "preset": "liver"}], "context_slices": 1,
                               "context_min_mm": 6.0, "target_spacing_mm": 3.0}))
    assert main(["preprocess", "Testing/Data/example_ct_sm.nii.gz", "--config", str(cfg), "-o",
                 str(tmp_path / "y.png"), "--slices", "2"]) == 0
    assert ("3 slice(s) (context_slices=1, neighbours 2 slices (6 mm) apart on this CT's 3 mm slices (context_min_mm=6))"
            in capsys.readouterr().out)


def test_preprocess_command_checks_output_before_reading(tmp_path, capsys):
    from LiverTumorSegLib.cli import main
    existing = tmp_path / "p.png"
    existing.write_bytes(b"x")
    assert main(["preprocess", str(tmp_path / "missing.nii.gz"), "-o", str(existing)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["preprocess", "Testing/Data/example_ct_sm.nii.gz", "-o", str(tmp_path / "p.jpg")]) == 2
    assert ".png" in capsys.readouterr().err
    assert main(["preprocess", str(tmp_path / "missing.nii.gz"), "-o", str(tmp_path / "q.png")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_preview_rows_say_the_slices_s_position_and_non_square_pixels(tmp_path, monkeypatch):
    """Rows read 'slice z=5', an index of the reoriented copy (on a z-flipped file the superior marker was in
    the file's slice 5 but shown in the row 'z=15'); the title said '1.50 mm' for 1.5 x 2.0 mm pixels."""
    import matplotlib.axes

    from LiverTumorSegLib.volume import CTVolume, ImageGeometry

    said = []
    for method in ("set_ylabel", "set_title"):
        original = getattr(matplotlib.axes.Axes, method)
        monkeypatch.setattr(matplotlib.axes.Axes, method,
                            lambda self, text, *a, _o=original, **k: said.append(text) or _o(self, text, *a, **k))
    ph = make_phantom((6, 32, 32))
    volume = CTVolume(ph.ct.array, ImageGeometry(spacing=(1.5, 2.0, 3.0), origin=(0.0, 0.0, -30.0)))
    render_preview(volume, "default", tmp_path / "p.png", slices=[1, 4])
    assert "axial at S -27.0 mm" in said and "axial at S -18.0 mm" in said   # -30 + 3 mm x slice
    assert any("32x32 px, 1.50 x 2.00 mm" in text for text in said)


def test_captions_on_a_tilted_ct_give_the_s_of_the_slices_centre(tmp_path, monkeypatch):
    """On a CT tilted 15 degrees about the left-right axis, evaluate's overlay and the preprocess preview gave the S
    of each slice's first voxel (35.9 mm for a slice centred at 10.1 mm) where segment's preview gave its centre
    (the preview audit)."""
    import matplotlib.axes

    from LiverTumorSegLib.volume import CTVolume, ImageGeometry

    t = np.radians(15.0)
    direction = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(t), -np.sin(t)], [0.0, np.sin(t), np.cos(t)]])
    geometry = ImageGeometry(spacing=(1.0, 2.0, 3.0), origin=(0.0, 0.0, 0.0), direction=direction)
    shape = (6, 40, 32)                                    # (z, y, x): the row axis (y) is tilted towards S
    # by hand: the centre of slice 4 is index ((32 - 1) / 2, (40 - 1) / 2, 4); its S is the direction's third row
    # applied to the index times the spacing
    expected = float(np.sin(t) * 19.5 * 2.0 + np.cos(t) * 4 * 3.0)
    assert geometry.slice_centre_s_mm(4, shape) == pytest.approx(expected)
    assert geometry.index_to_lps((0.0, 0.0, 4.0))[2] == pytest.approx(np.cos(t) * 12.0)  # first voxel: 10 mm lower
    said = []
    original = matplotlib.axes.Axes.set_ylabel
    monkeypatch.setattr(matplotlib.axes.Axes, "set_ylabel",
                        lambda self, text, *a, **k: said.append(text) or original(self, text, *a, **k))
    ph = make_phantom(shape)
    render_preview(CTVolume(ph.ct.array, geometry), "default", tmp_path / "p.png", slices=[4])
    assert f"axial at S {expected:.1f} mm" in said


def test_evaluate_overlay_title_gives_the_slice_s_position(tmp_path, monkeypatch):
    import matplotlib.axes

    from LiverTumorSegLib.metrics.report import plot_case_overlay

    said = []
    original = matplotlib.axes.Axes.set_title
    monkeypatch.setattr(matplotlib.axes.Axes, "set_title",
                        lambda self, text, *a, **k: said.append(text) or original(self, text, *a, **k))
    labels = np.zeros((4, 16, 16), np.uint8)
    labels[2, 4:12, 4:12] = 1
    plot_case_overlay(labels, labels, tmp_path / "o.png", slice_s_mm=[10.0, 12.5, 15.0, 17.5], title="case a")
    assert said[-1] == "case a\naxial slice at S 15.0 mm"


def test_preview_shows_as_many_slices_as_asked_when_the_range_holds_them():
    """--slices 4 and 5 on a 5-slice body range showed 3 slices (the picks left out both ends and merged)."""
    hu = np.full((5, 8, 8), 40.0, np.float32)
    assert [len(choose_preview_slices(hu, n)) for n in (1, 2, 3, 4, 5, 9)] == [1, 2, 3, 4, 5, 5]
    assert choose_preview_slices(hu, 5) == [0, 1, 2, 3, 4]
    hu = np.full((30, 8, 8), 40.0, np.float32)
    assert [len(choose_preview_slices(hu, n)) for n in (28, 29, 30)] == [28, 29, 30]
    assert choose_preview_slices(hu, 3) == [7, 14, 22]  # few slices: still away from the range's ends


def test_channel_descriptions_name_the_filters_and_the_equalization_each_channel_passes_through(tmp_path, capsys):
    """The 'wide_equalized_median' preview named its channel 'window wide (L0 W2000)' while the picture showed it
    equalized after a median filter. The median and Gaussian filters come before every channel, equalization
    after a window channel only."""
    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.preprocessing.config import PreprocessingConfig

    config = PreprocessingConfig.from_dict({"channels": [{"kind": "window", "level": 40, "width": 400},
                                                         {"kind": "zscore"}],
                                            "median_size": 3, "gaussian_sigma_mm": 1.5, "equalize": "clahe"})
    assert config.channel_descriptions == [
        "window L40 W400, after a 3x3 median filter, after a Gaussian filter (sigma 1.5 mm), CLAHE-equalized",
        "zscore (body), after a 3x3 median filter, after a Gaussian filter (sigma 1.5 mm)"]
    assert PreprocessingConfig.preset("default").channel_descriptions == PreprocessingConfig.preset("default").channel_names
    assert main(["preprocess", "Testing/Data/example_ct_sm.nii.gz", "--preset", "wide_equalized_median", "-o",
                 str(tmp_path / "p.png"), "--slices", "1"]) == 0
    assert "channel 0: window wide (L0 W2000), after a 3x3 median filter, histogram-equalized" in capsys.readouterr().out


def test_preprocess_command_previews_the_preprocessing_a_model_package_records(tmp_path, capsys, monkeypatch):
    """--model previews the package's own preprocessing, exactly as segment applies it; a package given as --config
    said 'not UTF-8 text (byte 1)'."""
    import torch

    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.models import build_model
    from LiverTumorSegLib.package import save_model_package
    import LiverTumorSegLib.preprocessing as preprocessing

    cfg = PreprocessingConfig(channels=[{"kind": "window", "level": 123.0, "width": 321.0}], context_slices=1,
                              context_max_mm=2.0, target_spacing_mm=2.7, size_multiple=8)
    torch.manual_seed(0)
    model = build_model("attention_unet", in_channels=cfg.in_channels, num_classes=3, channels=(4, 8))  # no MONAI
    package = save_model_package(tmp_path / "m.safetensors", model, cfg, metadata={"name": "m"})
    used = []
    monkeypatch.setattr(preprocessing, "render_preview",
                        lambda v, c, *a, **k: used.append(c) or render_preview(v, c, *a, **k))
    out = tmp_path / "p.png"
    assert main(["preprocess", "Testing/Data/example_ct_sm.nii.gz", "--model", str(package), "-o", str(out)]) == 0
    assert used[0].to_dict() == cfg.to_dict() and out.stat().st_size > 1000
    assert "channel 0: window L123 W321" in capsys.readouterr().out
    assert main(["preprocess", "Testing/Data/example_ct_sm.nii.gz", "--config", str(package), "-o",
                 str(tmp_path / "q.png")]) == 2
    err = capsys.readouterr().err
    assert "is a model package, not a preprocessing config JSON file" in err and "--model" in err
    assert main(["preprocess", "Testing/Data/example_ct_sm.nii.gz", "--model", str(tmp_path / "none.safetensors"),
                 "-o", str(tmp_path / "q.png")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "q.png").exists()


def test_preprocess_command_judges_a_packages_preprocessing_as_loading_does(tmp_path, capsys):
    """A package of today's version without its preprocessing channels (edited and resealed) is refused by segment
    and load_model_package, while preprocess --model previewed the library's default windows with exit 0 (the
    package audit): refused alike now, and no PNG is written."""
    import torch

    import json

    from safetensors.torch import load_file, save_file

    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.models import build_model
    from LiverTumorSegLib.package import (ModelPackageError, load_model_package, metadata_sha256,
                                          read_safetensors_header, save_model_package)

    cfg = PreprocessingConfig(channels=[{"kind": "window", "level": 123.0, "width": 321.0}], context_slices=1,
                              target_spacing_mm=2.7, size_multiple=8)
    torch.manual_seed(0)
    model = build_model("attention_unet", in_channels=cfg.in_channels, num_classes=3, channels=(4, 8))
    package = save_model_package(tmp_path / "m.safetensors", model, cfg, metadata={"name": "m"})
    meta = json.loads(read_safetensors_header(package)["__metadata__"]["livertumorseg"])
    meta["preprocessing"].pop("channels")  # edited by hand and resealed: what a loader must judge on its own
    meta.pop("metadata_sha256")
    meta["metadata_sha256"] = metadata_sha256(meta)
    save_file(load_file(str(package)), str(package), metadata={"livertumorseg": json.dumps(meta), "format": "pt"})
    with pytest.raises(ModelPackageError, match="channels"):
        load_model_package(package)
    out = tmp_path / "p.png"
    assert main(["preprocess", "Testing/Data/example_ct_sm.nii.gz", "--model", str(package), "-o", str(out)]) == 2
    assert "channels" in capsys.readouterr().err and not out.exists()


def test_preprocess_command_names_a_training_recipe_given_as_config(tmp_path, capsys):
    """A training recipe (train --config, YAML) given to preprocess --config said only 'Preprocessing config is
    not valid JSON: Expecting value'; it is refused naming what it is and what to give instead, before the CT is
    read, and no PNG is written."""
    from pathlib import Path

    from LiverTumorSegLib.cli import main

    recipe = Path(__file__).resolve().parents[2] / "scripts" / "default_model_v10.yaml"
    out = tmp_path / "p.png"
    assert main(["preprocess", str(tmp_path / "no_such_ct.nii.gz"), "--config", str(recipe), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "is a YAML file, such as a training recipe (train --config)" in err and "--preset" in err
    assert not out.exists()
