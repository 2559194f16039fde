"""Segmentation preview PNG: slice choice, overlay colours, physical aspect ratio, legend, and no pyplot
backend switch (Slicer keeps its own)."""
import numpy as np
import pytest

pytest.importorskip("matplotlib")

from LiverTumorSegLib.inference.preview import (LIVER_RGBA, TUMOR_RGBA, overlay_rgb,  # noqa: E402
                                                 pick_preview_slices, save_overlay_preview)
from LiverTumorSegLib.volume import CTVolume, ImageGeometry  # noqa: E402


def test_pick_preview_slices_prefers_tumor_then_liver():
    labels = np.zeros((5, 6, 7), np.uint8)
    labels[1, 1:5, 1:5] = 1          # most liver on slice 1
    labels[3, 2:4, 2:3] = 2          # the only tumor on slice 3, rows 2..3
    assert pick_preview_slices(labels) == (3, 3)
    labels[labels == 2] = 0
    assert pick_preview_slices(labels) == (1, 3)
    assert pick_preview_slices(np.zeros((5, 6, 7), np.uint8)) == (2, 3)


def test_overlay_rgb_known_colours():
    hu = np.array([[-160.0, 40.0, 240.0, 40.0]])   # window 40/400: 0, 0.5, 1, 0.5
    labels = np.array([[0, 0, 1, 2]], np.uint8)
    rgb = overlay_rgb(hu, labels)
    np.testing.assert_allclose(rgb[0, 0], 0.0)
    np.testing.assert_allclose(rgb[0, 1], 0.5)
    a = LIVER_RGBA[3]
    np.testing.assert_allclose(rgb[0, 2], (1 - a) * 1.0 + a * np.array(LIVER_RGBA[:3]), rtol=1e-6)
    a = TUMOR_RGBA[3]
    np.testing.assert_allclose(rgb[0, 3], (1 - a) * 0.5 + a * np.array(TUMOR_RGBA[:3]), rtol=1e-6)


def test_preview_png_shows_tumor_red_and_keeps_pyplot_backend(tmp_path):
    import matplotlib
    import matplotlib.image as mpimg

    backend_before = matplotlib.get_backend()
    shape = (10, 30, 30)
    ct = np.full(shape, -1000, np.int16)
    ct[:, 5:25, 5:25] = 60
    labels = np.zeros(shape, np.uint8)
    labels[:, 5:25, 5:25] = 1
    labels[4:7, 12:18, 12:18] = 2
    volume = CTVolume(ct, ImageGeometry(spacing=(1.0, 1.0, 3.0)))
    path = save_overlay_preview(tmp_path / "p.png", volume, labels)
    assert matplotlib.get_backend() == backend_before
    image = mpimg.imread(str(path))[..., :3]
    red = (image[..., 0] > 0.6) & (image[..., 1] < 0.35) & (image[..., 2] < 0.35)
    green = (image[..., 1] > 0.5) & (image[..., 0] < 0.4)
    assert red.sum() > 50 and green.sum() > 50
    from LiverTumorSegLib.errors import OutputExistsError

    with pytest.raises(OutputExistsError):
        save_overlay_preview(tmp_path / "p.png", volume, labels)  # exists, no overwrite
