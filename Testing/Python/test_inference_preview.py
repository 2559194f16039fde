"""Segmentation preview PNG: slice choice, overlay colours, physical aspect ratio, legend, and no pyplot
backend switch (Slicer keeps its own)."""
import numpy as np
import pytest

pytest.importorskip("matplotlib")

from LiverTumorSegLib.inference.preview import (LIVER_RGBA, TUMOR_RGBA, overlay_rgb,  # noqa: E402
                                                 pick_preview_slices, save_overlay_preview)
from LiverTumorSegLib.phantom import make_phantom  # noqa: E402
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


def test_coronal_aspect_stretches_thin_volumes_only():
    from LiverTumorSegLib.inference.preview import MIN_CORONAL_HEIGHT, coronal_display_aspect

    assert coronal_display_aspect((40, 64, 64), (2.0, 1.0, 1.0)) == (2.0, 1.0)     # true proportions
    aspect, stretch = coronal_display_aspect((3, 512, 512), (1.0, 0.81, 0.81))
    assert 3 * aspect / 512 == pytest.approx(MIN_CORONAL_HEIGHT) and stretch == pytest.approx(aspect * 0.81)


def test_thin_volume_preview_keeps_titles_and_a_visible_coronal_panel(tmp_path):
    """3 slices of 512 x 512 (the repo's ct3slice case): nothing cut off at the top, coronal panel not a strip."""
    import matplotlib.image

    from LiverTumorSegLib.inference.preview import save_overlay_preview

    phantom = make_phantom(shape_zyx=(3, 256, 256), spacing_xyz=(0.8, 0.8, 1.0), seed=0)
    path = save_overlay_preview(tmp_path / "thin.png", phantom.ct, phantom.labels)
    rgb = matplotlib.image.imread(str(path))[..., :3]
    ink = rgb.min(axis=-1) < 0.9                             # anything not white
    assert not ink[:2].any()                                 # white margin above the titles: nothing clipped
    right = ink[:, ink.shape[1] // 2 + 10:]
    image_rows = np.nonzero(right.sum(axis=1) > 0.5 * right.shape[1])[0]   # rows filled by the coronal image
    assert image_rows.size > 0.2 * right.shape[1] * 0.8


def test_lesion_numbers_sit_inside_their_lesions():
    from LiverTumorSegLib.inference.preview import lesion_label_positions

    ids = np.zeros((20, 20), dtype=np.int32)
    ids[2:6, 2:6] = 2
    ids[10:18, 10:12] = 1
    ids[10:12, 10:18] = 1                     # an L shape: its centroid lies outside it
    positions = dict(lesion_label_positions(ids))
    assert sorted(positions) == [1, 2]
    for number, (row, col) in positions.items():
        assert ids[row, col] == number
    assert positions[2] in ((3, 3), (3, 4), (4, 3), (4, 4))


@pytest.mark.parametrize("with_tumor", [False, True])
def test_preview_of_a_volume_stored_in_another_axis_order(tmp_path, with_tumor):
    # a tumor-free CT stored sagittally crashed the preview (lesion ids were left in the stored layout) and with it
    # the whole segment run
    shape = (30, 10, 24)                                   # stored (z, y, x) with the axial axis along x
    ct = np.full(shape, -1000, np.int16)
    ct[5:25, :, 4:20] = 60
    labels = np.zeros(shape, np.uint8)
    labels[5:25, :, 4:20] = 1
    if with_tumor:
        labels[12:16, 3:6, 8:12] = 2
    sagittal = (0, 0, 1, 1, 0, 0, 0, 1, 0)                 # i -> S, j -> L, k -> P
    volume = CTVolume(ct, ImageGeometry(spacing=(3.0, 1.0, 1.0), direction=sagittal))
    assert save_overlay_preview(tmp_path / "p.png", volume, labels).stat().st_size > 1000


def test_a_nifti_without_orientation_gets_no_side_letters_but_a_warning_on_the_picture(tmp_path):
    """Its sides are a guess (ITK and nibabel place such a file differently): the preview drew R/L/A/P as facts,
    and on the audit's file it showed the patient mirrored with 'R' on the liver's far side."""
    import matplotlib.image as mpimg

    shape = (10, 30, 30)
    ct = np.full(shape, -1000, np.int16)
    ct[:, 5:25, 5:25] = 60
    labels = np.zeros(shape, np.uint8)
    labels[:, 5:25, 5:25] = 1

    def letters_and_note(meta):
        path = save_overlay_preview(tmp_path / f"p{len(meta)}.png",
                                    CTVolume(ct, ImageGeometry(spacing=(1.0, 1.0, 3.0)), meta=meta), labels)
        image = mpimg.imread(str(path))[..., :3]
        yellow = (image[..., 0] > 0.8) & (image[..., 1] > 0.8) & (image[..., 2] < 0.3)
        red = (image[..., 0] > 0.8) & (image[..., 1] < 0.3) & (image[..., 2] < 0.3)  # legend swatch, the note
        return int(yellow.sum()), int(red.sum())

    known_yellow, known_red = letters_and_note({})
    unknown_yellow, unknown_red = letters_and_note({"nifti_orientation_unknown": True})
    assert known_yellow > 20 and unknown_yellow == 0
    assert unknown_red > known_red + 20                      # the red note above the panels


def test_preview_titles_give_mm_positions_that_do_not_depend_on_the_storage_order(tmp_path, monkeypatch):
    """The titles said 'axial (canonical slice 5)', an index of the reoriented copy, not of the user's file (the
    geometry audit); they now give the slice's S and the row's A position in mm."""
    import matplotlib.axes

    said = []
    original = matplotlib.axes.Axes.set_title
    monkeypatch.setattr(matplotlib.axes.Axes, "set_title",
                        lambda self, text, *a, **k: said.append(text) or original(self, text, *a, **k))
    ct = np.full((8, 12, 12), -1000, np.int16)
    ct[1:7, 2:10, 2:10] = 60
    labels = np.zeros(ct.shape, np.uint8)
    labels[1:7, 2:10, 2:10] = 1
    labels[5, 4:7, 4:7] = 2                                 # the most tumor: slice 5, S = -20 + 5 x 3 mm
    geometry = ImageGeometry(spacing=(1.0, 1.0, 3.0), origin=(0.0, 0.0, -20.0))
    save_overlay_preview(tmp_path / "a.png", CTVolume(ct, geometry), labels)
    # the same CT stored with its slices in the other order (inferior to superior flipped)
    flipped = ImageGeometry(spacing=(1.0, 1.0, 3.0), origin=(0.0, 0.0, -20.0 + 7 * 3.0),
                            direction=(1, 0, 0, 0, 1, 0, 0, 0, -1))
    save_overlay_preview(tmp_path / "b.png", CTVolume(ct[::-1].copy(), flipped), labels[::-1].copy())
    first, second = said[:2], said[2:4]
    assert first == second
    assert first[0].startswith("axial at S -5.0 mm") and first[1].startswith("coronal at A ")


def test_the_orientation_banner_lies_above_the_panel_titles_and_within_the_figure(tmp_path, monkeypatch):
    """The red 'ORIENTATION UNKNOWN' banner of a CT without orientation lay over the axial panel's title (its slice
    position, unreadable), and as one line wider than the figure it widened the saved picture (the pictures audit)."""
    from matplotlib.figure import Figure

    from LiverTumorSegLib.inference.preview import save_overlay_preview
    from LiverTumorSegLib.phantom import make_phantom
    from LiverTumorSegLib.volume import ORIENTATION_ASSUMED_KEY, CTVolume

    drawn = []
    original = Figure.savefig

    def keep(self, *args, **kwargs):
        drawn.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    phantom = make_phantom(shape_zyx=(12, 64, 64), seed=0)
    volume = CTVolume(phantom.ct.array, phantom.ct.geometry, "x", meta={ORIENTATION_ASSUMED_KEY: True})
    save_overlay_preview(tmp_path / "unknown.png", volume, phantom.labels)
    fig = drawn[-1]
    renderer = fig.canvas.get_renderer()
    banner = fig._suptitle.get_window_extent(renderer)
    figure_box = fig.bbox
    assert "ORIENTATION UNKNOWN" in fig._suptitle.get_text()
    assert banner.x0 >= figure_box.x0 and banner.x1 <= figure_box.x1  # within the figure's width
    for ax in fig.axes:
        title = ax.title.get_window_extent(renderer)
        assert title.y1 <= banner.y0, (title, banner)  # below the banner, not under it


def test_panels_of_a_tilted_grid_are_titled_as_tilted_with_their_centre_position():
    """On a CT tilted 15 degrees about the left-right axis the axial panel said 'axial at S 338.9 mm', the S of the
    slice's centre, for a lesion the report put at S 322.6 mm: S varies by tens of mm across such a slice (the
    outputs audit). Such panels say that they are tilted; an axial grid's titles are as before, also stored
    flipped or turned about S."""
    import math

    from LiverTumorSegLib.inference.preview import panel_titles, plane_tilts_degrees
    from LiverTumorSegLib.orientation import canonicalize

    ct = np.zeros((8, 12, 12), np.int16)
    angle = math.radians(15.0)
    tilted = (1, 0, 0, 0, math.cos(angle), math.sin(angle), 0, -math.sin(angle), math.cos(angle))  # about x (L-R)
    canonical, _ = canonicalize(CTVolume(ct, ImageGeometry(spacing=(1.0, 1.0, 3.0), direction=tilted)))
    assert plane_tilts_degrees(canonical.geometry.direction_matrix) == pytest.approx((15.0, 15.0))
    axial, coronal = panel_titles(canonical, 4, 6)
    assert axial.startswith("slice tilted 15 deg from axial, S ") and axial.endswith(" mm at its centre")
    assert coronal.startswith("row tilted 15 deg from coronal, A ")
    turned = (math.cos(angle), math.sin(angle), 0, -math.sin(angle), math.cos(angle), 0, 0, 0, 1)  # about S only
    canonical, _ = canonicalize(CTVolume(ct, ImageGeometry(spacing=(1.0, 1.0, 3.0), direction=turned)))
    axial, coronal = panel_titles(canonical, 4, 6)
    assert axial.startswith("axial at S ") and coronal.startswith("row tilted 15 deg from coronal")
    canonical, _ = canonicalize(CTVolume(ct, ImageGeometry(spacing=(1.0, 1.0, 3.0), direction=(1, 0, 0, 0, 1, 0,
                                                                                                0, 0, -1))))
    axial, coronal = panel_titles(canonical, 4, 6)
    assert axial.startswith("axial at S ") and coronal.startswith("coronal at A ")
