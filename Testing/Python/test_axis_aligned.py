"""An oblique CT is segmented on an axis-aligned grid (inference/axis_aligned.py): geometry, round trip, the
segmenter's choice of path. No network: stand-in engines label by HU."""
from types import SimpleNamespace

import numpy as np
import pytest

from LiverTumorSegLib.inference import axis_aligned
from LiverTumorSegLib.volume import CTVolume, ImageGeometry

LESION_CENTRE_LPS = np.array([10.0, -6.0, 4.0])  # mm
LESION_RADIUS_MM = 12.0


def _tilted_geometry(degrees, spacing_xyz=(1.5, 1.5, 3.0), shape_zyx=(40, 96, 96)):
    """A grid turned ``degrees`` about the left-right (x) axis, centred on the LPS origin."""
    a = np.deg2rad(degrees)
    direction = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(a), -np.sin(a)], [0.0, np.sin(a), np.cos(a)]])
    half = (np.asarray(shape_zyx[::-1], dtype=float) - 1.0) / 2.0 * np.asarray(spacing_xyz)
    origin = -direction @ half
    return ImageGeometry(spacing=spacing_xyz, origin=tuple(origin), direction=tuple(direction.ravel()))


def _points_lps(geometry, shape_zyx):
    """The LPS position (mm) of every voxel centre, ``(z, y, x, 3)``."""
    k, j, i = np.meshgrid(*[np.arange(n, dtype=float) for n in shape_zyx], indexing="ij")
    ijk = np.stack([i, j, k], axis=-1)
    return ijk @ (geometry.direction_matrix @ np.diag(geometry.spacing)).T + np.asarray(geometry.origin)


def _phantom(geometry, shape_zyx=(40, 96, 96)):
    """HU: a 60 HU slab of liver (|S| < 40 mm, |P| < 50 mm) in air with a 10 HU ball (the lesion) in it, placed in
    physical space, so the same anatomy for every grid; labels 1 liver, 2 lesion."""
    p = _points_lps(geometry, shape_zyx)
    liver = (np.abs(p[..., 2]) < 40.0) & (np.abs(p[..., 1]) < 50.0) & (np.abs(p[..., 0]) < 60.0)
    lesion = np.linalg.norm(p - LESION_CENTRE_LPS, axis=-1) < LESION_RADIUS_MM
    hu = np.where(liver, 60.0, -1000.0).astype(np.float32)
    hu[lesion] = 10.0
    labels = liver.astype(np.uint8)
    labels[lesion] = 2
    return hu, labels


def _centroid_lps(mask, geometry):
    return _points_lps(geometry, mask.shape)[mask].mean(axis=0)


def test_an_axis_aligned_grid_is_its_own_aligned_grid():
    geometry = ImageGeometry(spacing=(0.8, 0.8, 2.5), origin=(-200.0, -180.0, 30.0))
    grid = axis_aligned.aligned_grid(geometry, (20, 64, 48), (0.8, 0.8, 2.5))
    assert grid.shape_zyx == (20, 64, 48) and grid.geometry.almost_equal(geometry)


def test_the_aligned_grid_covers_every_voxel_centre_of_a_tilted_ct():
    geometry = _tilted_geometry(30.0)
    grid = axis_aligned.aligned_grid(geometry, (40, 96, 96), (1.5, 1.5, 3.0))
    assert np.allclose(grid.geometry.direction_matrix, np.eye(3))
    p = _points_lps(geometry, (40, 96, 96)).reshape(-1, 3)
    index = (p - np.asarray(grid.geometry.origin)) / np.asarray(grid.geometry.spacing)
    assert index.min() > -1e-6 and np.all(index.max(axis=0) < np.asarray(grid.shape_zyx[::-1]) - 1 + 1e-6)


@pytest.mark.parametrize("degrees", [10.0, 30.0])
def test_a_tilted_lesion_keeps_its_volume_and_place_through_the_aligned_grid_and_back(degrees):
    geometry = _tilted_geometry(degrees)
    hu, labels = _phantom(geometry)
    volume = CTVolume(hu, geometry)
    aligned, grid = axis_aligned.onto_aligned_grid(volume, (1.5, 1.5, 3.0))
    # on the aligned grid the lesion sits where it is in the patient: same LPS centre, no flip or shift
    centre_index = np.rint((LESION_CENTRE_LPS - np.asarray(grid.geometry.origin)) / grid.geometry.spacing).astype(int)
    assert aligned.array[tuple(centre_index[::-1])] == pytest.approx(10.0, abs=1.0)
    back = axis_aligned.labels_back(labels, geometry, grid.geometry, grid.shape_zyx)
    assert np.allclose(_centroid_lps(back == 2, grid.geometry), LESION_CENTRE_LPS, atol=0.5)
    again = axis_aligned.labels_back(back, grid.geometry, geometry, volume.shape_zyx)
    voxel_ml = geometry.voxel_volume_ml
    true_ml = np.count_nonzero(labels == 2) * voxel_ml
    assert true_ml == pytest.approx(4.0 / 3.0 * np.pi * LESION_RADIUS_MM ** 3 / 1000.0, rel=0.08)
    assert np.count_nonzero(again == 2) * voxel_ml == pytest.approx(true_ml, rel=0.08)
    assert np.allclose(_centroid_lps(again == 2, geometry), LESION_CENTRE_LPS, atol=0.5)
    liver_true, liver_back = labels >= 1, again >= 1
    dice = 2.0 * np.count_nonzero(liver_true & liver_back) / (liver_true.sum() + liver_back.sum())
    assert dice > 0.97


def test_resample_onto_the_same_grid_is_the_identity():
    geometry = _tilted_geometry(20.0, shape_zyx=(8, 16, 16))
    rng = np.random.default_rng(0)
    array = rng.normal(0.0, 100.0, size=(8, 16, 16)).astype(np.float32)
    same = axis_aligned.resample(array, geometry, geometry, array.shape)
    assert np.allclose(same, array, atol=1e-3)


class _HUEngine:
    """An engine stand-in: records the CT it is given; 60 HU (+-15) is liver, 10 HU (+-15) lesion."""

    def __init__(self):
        self.package, self.given = SimpleNamespace(metadata={}, name="stand-in", path="stand-in"), []

    def predict(self, volume, progress=None, cancel=None):
        self.given.append(volume)
        hu = np.asarray(volume.array, dtype=np.float32)
        labels = (np.abs(hu - 60.0) < 15.0).astype(np.uint8)
        labels[np.abs(hu - 10.0) < 15.0] = 2
        return labels


def _segment(volume):
    from LiverTumorSegLib.inference import SegmentationOptions
    from LiverTumorSegLib.inference.segmenter import Segmenter

    engine = _HUEngine()
    result = Segmenter(SegmentationOptions(), engine=engine).segment_volume(volume, checked=True)
    return engine, result


@pytest.mark.parametrize("degrees", [0.0, 4.0])
def test_an_axial_or_nearly_axial_ct_takes_the_usual_path(degrees):
    geometry = _tilted_geometry(degrees)
    hu, _ = _phantom(geometry)
    volume = CTVolume(hu, geometry)
    engine, result = _segment(volume)
    assert engine.given[0] is volume and "network_grid" not in result.report


def test_an_oblique_ct_is_segmented_on_an_axis_aligned_grid_and_its_lesion_keeps_volume_and_place(monkeypatch):
    monkeypatch.setattr(axis_aligned, "FOOTPRINT_MARGIN_PIXELS", 4)  # boxes within the slices: the runs' path
    geometry = _tilted_geometry(20.0)
    hu, labels = _phantom(geometry)
    volume = CTVolume(hu, geometry)
    engine, result = _segment(volume)
    given = engine.given[0]
    assert np.allclose(given.geometry.direction_matrix, np.eye(3))
    assert given.geometry.spacing == pytest.approx((1.5, 1.5, 3.0))  # the CT's finest in-plane and slice spacing
    record = result.report["network_grid"]
    assert record["kind"] == "axis_aligned" and record["obliquity_degrees"] == pytest.approx(20.0, abs=0.01)
    for part in engine.given:  # the network's runs over the CT's footprint: boxes of the aligned grid
        first = (np.asarray(part.geometry.origin) - record["origin_lps_mm"]) / np.asarray(record["spacing_mm"])
        assert np.allclose(first, np.rint(first), atol=1e-3) and np.all(np.rint(first) >= 0)  # origin: 3 decimals
        assert np.all(np.rint(first)[::-1] + part.shape_zyx <= record["shape_zyx"])
    footprint = record["footprint"]  # the report says where the network ran
    assert footprint["runs"] == len(engine.given) and footprint["margin_pixels"] == axis_aligned.FOOTPRINT_MARGIN_PIXELS
    assert footprint["network_voxels"] == sum(int(np.prod(part.shape_zyx)) for part in engine.given)
    assert result.labels.shape == hu.shape and result.geometry == geometry
    voxel_ml = geometry.voxel_volume_ml
    true_ml = np.count_nonzero(labels == 2) * voxel_ml
    assert np.count_nonzero(result.labels == 2) * voxel_ml == pytest.approx(true_ml, rel=0.08)
    assert np.allclose(_centroid_lps(result.labels == 2, geometry), LESION_CENTRE_LPS, atol=0.5)


def test_preprocess_previews_an_oblique_ct_on_the_grid_segment_gives_the_network(tmp_path, monkeypatch, capsys):
    """``preprocess`` shows what segment feeds the network: an oblique CT on the patient-aligned grid (it showed
    the oblique slices, and told the user to resample the CT, which segment now does itself)."""
    import LiverTumorSegLib.preprocessing as preprocessing
    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.io import write_volume

    given, titles = [], []
    monkeypatch.setattr(preprocessing, "render_preview",
                        lambda volume, config, output, **kw: given.append(volume) or titles.append(
                            kw["first_column"]) or output)
    geometry = _tilted_geometry(30.0)
    hu, _ = _phantom(geometry)
    path = write_volume(tmp_path / "ct.nii.gz", CTVolume(hu.astype(np.int16), geometry))
    assert main(["preprocess", str(path), "-o", str(tmp_path / "p.png")]) == 0
    shown = given[0]
    assert np.allclose(shown.geometry.direction_matrix, np.eye(3), atol=1e-6)
    assert shown.geometry.spacing == pytest.approx((1.5, 1.5, 3.0))  # the default preset's 1.5 mm, the CT's slices
    # its first column was titled 'original HU' over the aligned grid's size and pixels (helper-404's audit)
    axial = write_volume(tmp_path / "axial.nii.gz", CTVolume(hu.astype(np.int16), _tilted_geometry(0.0)))
    assert main(["preprocess", str(axial), "-o", str(tmp_path / "a.png")]) == 0
    assert titles == ["HU on segment's patient-aligned grid", "original HU"]
    err = capsys.readouterr().err
    assert "turned 30 degrees from the patient axes" in err and "Resample" not in err


def _segmenter(engine, **options):
    from LiverTumorSegLib.inference import SegmentationOptions
    from LiverTumorSegLib.inference.segmenter import Segmenter

    return Segmenter(SegmentationOptions(**options), engine=engine)


def test_oblique_grid_stored_gives_the_network_the_ct_on_its_own_grid_and_says_so():
    """``--oblique-grid stored`` (``oblique_grid="stored"``): a researcher's run on the CT's stored (oblique) slices,
    as before the aligned grid; the report's options record it, and the warning says the model reads oblique
    slices (it said segment had resampled the CT)."""
    geometry = _tilted_geometry(30.0)
    hu, _ = _phantom(geometry)
    volume = CTVolume(hu, geometry)
    engine = _HUEngine()
    result = _segmenter(engine, oblique_grid="stored").segment_volume(volume)
    assert engine.given[0] is volume and "network_grid" not in result.report
    assert result.report["options"]["oblique_grid"] == "stored"
    said = [w for w in result.warnings if "patient axes" in w]
    assert said and "reads the grid's slices as axial slices" in said[0] and "segment gave" not in said[0]
    engine = _HUEngine()
    result = _segmenter(engine).segment_volume(volume)  # the default: aligned
    assert engine.given[0] is not volume and result.report["options"]["oblique_grid"] == "aligned"
    assert "network_grid" in result.report


@pytest.mark.parametrize("about_s", [False, True])  # tilted about left-right, or turned about head-foot only
def test_the_oblique_grid_warning_of_a_stored_grid_run_names_dropping_the_option(about_s):
    """With ``--oblique-grid stored`` the warning told the user to resample the CT onto a patient-aligned grid
    first, which segment does itself without that option: it says so, in the caller's words. Training, which has
    no aligned grid, keeps its advice."""
    from LiverTumorSegLib.errors import cli_wording
    from LiverTumorSegLib.validation import check_ct

    a = np.deg2rad(30.0)
    c, s_ = np.cos(a), np.sin(a)
    direction = [[c, -s_, 0.0], [s_, c, 0.0], [0.0, 0.0, 1.0]] if about_s else None
    geometry = _tilted_geometry(30.0) if not about_s else ImageGeometry(
        spacing=(1.5, 1.5, 3.0), origin=(-70.0, -70.0, -60.0), direction=tuple(np.ravel(direction)))
    hu, _ = _phantom(geometry)
    volume = CTVolume(hu, geometry, source="ct.nii.gz")

    def said(**kwargs):
        found = [w for w in check_ct(volume, **kwargs) if "ct.nii.gz' is stored on a grid" in w]
        assert len(found) == 1
        return found[0]

    library = said(oblique_grid_stored=True)
    assert "oblique_grid='aligned' (the default)" in library and "patient-aligned grid itself" in library
    with cli_wording():
        cli = said(oblique_grid_stored=True)
    assert "segment without --oblique-grid stored, which resamples it onto a patient-aligned grid itself" in cli
    for message in (library, cli):
        assert "first" not in message
    assert "patient-aligned grid first" in said()  # training: no aligned grid to point to
    result = _segmenter(_HUEngine(), oblique_grid="stored").segment_volume(volume)  # segment's own call
    assert any("oblique_grid='aligned' (the default)" in w for w in result.warnings)


def test_oblique_grid_is_a_checked_option_with_its_flag():
    import argparse

    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.inference import SegmentationOptions
    from LiverTumorSegLib.inference.options import add_segmentation_arguments, options_from_args

    parser = argparse.ArgumentParser()
    add_segmentation_arguments(parser)
    options = options_from_args(parser.parse_args(["--oblique-grid", "stored"]))
    assert options.oblique_grid == "stored" and "--oblique-grid" in options.to_cli_args()
    assert options_from_args(parser.parse_args(options.to_cli_args())) == options
    assert options_from_args(parser.parse_args([])).oblique_grid == "aligned"
    assert SegmentationOptions.from_dict(options.to_dict()) == options
    with pytest.raises(InputError, match="--oblique-grid"):
        SegmentationOptions(oblique_grid="diagonal")


class _Recorder:
    """A progress callback that keeps ``(fraction, stage)``; cancels ``token`` at the first ``cancel_at`` stage."""

    def __init__(self, token=None, cancel_at=None):
        self.calls, self.token, self.cancel_at = [], token, cancel_at

    def __call__(self, fraction, stage):
        self.calls.append((fraction, stage))
        if self.token is not None and stage == self.cancel_at:
            self.token.cancel()


def test_the_resampling_onto_the_aligned_grid_and_back_reports_progress_as_its_own_stage():
    from LiverTumorSegLib.inference.segmenter import ALIGNED_GRID_STAGE

    geometry = _tilted_geometry(30.0)
    hu, _ = _phantom(geometry)
    class ReportingEngine(_HUEngine):
        def predict(self, volume, progress=None, cancel=None):
            progress(0.5, "segmenting")
            return super().predict(volume, progress, cancel)

    recorder = _Recorder()
    _segmenter(ReportingEngine()).predict(CTVolume(hu, geometry), recorder)
    stages = [stage for _, stage in recorder.calls]
    first, last = stages.index(ALIGNED_GRID_STAGE), len(stages) - 1 - stages[::-1].index(ALIGNED_GRID_STAGE)
    network = [i for i, stage in enumerate(stages) if stage == "network"]
    assert network and first < network[0] and last > network[-1]  # there before the network, back after it
    resampling = [f for f, stage in recorder.calls if stage == ALIGNED_GRID_STAGE]
    assert len(resampling) > 4  # the 40 slices turned 30 degrees: several slabs each way
    fractions = [f for f, _ in recorder.calls]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)


def test_a_cancel_during_the_resampling_onto_the_aligned_grid_stops_before_the_network():
    from LiverTumorSegLib.errors import CancelledError
    from LiverTumorSegLib.inference.segmenter import ALIGNED_GRID_STAGE
    from LiverTumorSegLib.progress import CancellationToken

    geometry = _tilted_geometry(30.0)
    hu, _ = _phantom(geometry)
    token = CancellationToken()
    engine = _HUEngine()
    with pytest.raises(CancelledError):
        _segmenter(engine).predict(CTVolume(hu, geometry), _Recorder(token, ALIGNED_GRID_STAGE), token)
    assert engine.given == []


def test_a_cancel_during_the_network_stops_the_way_back_from_the_aligned_grid():
    """``predict`` checks the cancel only inside the engine and the slab loops: a cancel the engine did not see
    (it came as its last batch ended) must stop the resampling back, not let it run its seconds."""
    from LiverTumorSegLib.errors import CancelledError
    from LiverTumorSegLib.progress import CancellationToken

    class CancellingEngine(_HUEngine):
        def predict(self, volume, progress=None, cancel=None):
            labels = super().predict(volume, progress, cancel)
            cancel.cancel()
            return labels

    geometry = _tilted_geometry(30.0)
    hu, _ = _phantom(geometry)
    token = CancellationToken()
    with pytest.raises(CancelledError):
        _segmenter(CancellingEngine()).predict(CTVolume(hu, geometry), None, token)


def _liver_dice(a, b):
    a, b = a >= 1, b >= 1
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def test_two_stage_on_an_oblique_ct_runs_on_the_aligned_grid_and_keeps_its_record_and_lesion():
    geometry = _tilted_geometry(30.0)
    hu, labels = _phantom(geometry)
    volume = CTVolume(hu, geometry)
    engine = _HUEngine()
    result = _segmenter(engine, two_stage=True).segment_volume(volume, checked=True)
    assert all(np.allclose(given.geometry.direction_matrix, np.eye(3)) for given in engine.given)  # both passes
    record = result.report["two_stage_record"]
    assert record["grid"] == "network_grid" and "crop_zyx" in record and "fallback" not in record
    assert record["crop_zyx"][0][1] <= result.report["network_grid"]["shape_zyx"][0]
    assert _liver_dice(result.labels, labels) > 0.97
    voxel_ml = geometry.voxel_volume_ml
    true_ml = np.count_nonzero(labels == 2) * voxel_ml
    assert np.count_nonzero(result.labels == 2) * voxel_ml == pytest.approx(true_ml, rel=0.08)
    assert np.allclose(_centroid_lps(result.labels == 2, geometry), LESION_CENTRE_LPS, atol=0.5)


def test_the_footprint_is_where_the_aligned_grid_lies_within_the_cts_voxels():
    geometry = _tilted_geometry(30.0, shape_zyx=(12, 48, 48))
    grid = axis_aligned.aligned_grid(geometry, (12, 48, 48), (1.5, 1.5, 3.0))
    inside = axis_aligned.footprint(grid.geometry, grid.shape_zyx, geometry, (12, 48, 48))
    # each aligned voxel centre's index in the CT, (x, y, z) per voxel
    index = (_points_lps(grid.geometry, grid.shape_zyx) - np.asarray(geometry.origin)) @ \
        np.linalg.inv(geometry.direction_matrix @ np.diag(geometry.spacing)).T
    expected = np.all((index >= -0.5) & (index <= np.asarray([47.5, 47.5, 11.5])), axis=-1)
    assert inside.shape == tuple(grid.shape_zyx) and inside.dtype == bool
    assert np.array_equal(inside, expected)
    assert 0.2 < inside.mean() < 0.8  # a thin tilted slab: much of its aligned box lies beyond it


def test_two_stage_crops_an_oblique_ct_to_its_liver_not_to_the_repeated_edge_voxels_beyond_it():
    """Beyond a tilted CT's own grid its aligned grid repeats the CT's edge voxels: a liver reaching the CT's first
    and last slices runs on through them to both ends of the aligned box, and two-stage's crop took them in (the whole
    143-slice aligned grid of a 20-slice CT turned 30 degrees: no time saved). The crop follows the liver within the
    CT's own voxels, and no part beyond them is reported as left out."""
    shape = (12, 192, 96)  # 36 mm thick, 288 mm front to back, turned 30 degrees
    geometry = _tilted_geometry(30.0, shape_zyx=shape)
    p = _points_lps(geometry, shape)
    liver = (np.abs(p[..., 1]) < 15.0) & (np.abs(p[..., 0]) < 30.0)  # a bar through the slab, first slice to last
    hu = np.where(liver, 60.0, -1000.0).astype(np.float32)
    volume = CTVolume(hu, geometry)
    result = _segmenter(_HUEngine(), two_stage=True).segment_volume(volume, checked=True)
    record, grid = result.report["two_stage_record"], result.report["network_grid"]
    assert "parts_outside_crop" not in record
    (z0, z1), = record["crop_zyx"][:1]
    # the liver's S range in mm, and the crop's (margin 15 mm plus one coarse voxel each side: 6 mm)
    liver_s = p[..., 2][liver]
    crop_s = grid["origin_lps_mm"][2] + np.array([z0, z1 - 1]) * grid["spacing_mm"][2]
    assert crop_s[0] >= liver_s.min() - 15.0 - 6.0 - 3.0 and crop_s[1] <= liver_s.max() + 15.0 + 6.0 + 3.0
    assert z1 - z0 < 0.75 * grid["shape_zyx"][0]
    single = _segmenter(_HUEngine()).segment_volume(volume, checked=True)  # the stand-in labels voxel by voxel
    assert np.array_equal(result.labels, single.labels) and _liver_dice(single.labels, liver) > 0.9


def test_two_stage_on_an_oblique_ct_without_liver_warns_of_its_fallback():
    """The two-stage record was left out of an oblique CT's report, and with it the warnings read from it: that the
    coarse pass found no liver and the whole volume was segmented."""
    geometry = _tilted_geometry(30.0, shape_zyx=(12, 48, 48))
    volume = CTVolume(np.full((12, 48, 48), -1000.0, dtype=np.float32), geometry)
    result = _segmenter(_HUEngine(), two_stage=True).segment_volume(volume, checked=True)
    assert "fallback" in result.report["two_stage_record"]
    assert any("found no liver in its coarse pass" in w for w in result.warnings)


def test_the_memory_check_counts_an_oblique_ct_on_its_aligned_grid(tmp_path, monkeypatch):
    """A thin CT turned 30 degrees is segmented on a patient-aligned grid with several times its slices: the memory
    check before the network must count that grid (it counted the CT's own), refuse with the usual message and
    name the way to the CT's own grid, which then fits."""
    pytest.importorskip("torch")
    from inference_helpers import tiny_unet_package

    from LiverTumorSegLib import validation
    from LiverTumorSegLib.errors import ResourceError
    from LiverTumorSegLib.io import write_volume

    package = tiny_unet_package(tmp_path)
    shape = (6, 64, 64)
    geometry = _tilted_geometry(30.0, spacing_xyz=(3.0, 3.0, 3.0), shape_zyx=shape)
    hu, _ = _phantom(geometry, shape)
    volume = CTVolume(hu.astype(np.int16), geometry)
    ct = write_volume(tmp_path / "tilted.nii.gz", volume)
    config = package.preprocessing
    grid = axis_aligned.aligned_grid(geometry, shape, axis_aligned.aligned_spacing_xyz(volume, 3.0))
    assert grid.shape_zyx[0] > 4 * shape[0]
    stored = validation.check_network_memory(volume, config, available_bytes=2 ** 60)
    aligned = validation.check_network_memory(volume, config, available_bytes=2 ** 60,
                                              aligned_shape_zyx=grid.shape_zyx,
                                              aligned_spacing_xyz=grid.geometry.spacing)
    assert aligned > stored + 2 ** 22
    between = (stored + aligned) // 2 - volume.array.nbytes
    monkeypatch.setattr(validation, "available_memory_bytes", lambda *args, **kwargs: between)
    segmenter = _segmenter(None, model=str(package.path), device="cpu", threads=1)
    segmenter.engine = None
    hint = "(--oblique-grid stored|oblique_grid='stored')"  # the library call's words
    with pytest.raises(ResourceError, match=r"patient-aligned grid \(z, y, x\) \(.*" + hint):
        segmenter.segment_file(ct, tmp_path / "labels.nii.gz")
    assert not (tmp_path / "labels.nii.gz").exists()
    segmenter = _segmenter(None, model=str(package.path), device="cpu", threads=1, oblique_grid="stored")
    segmenter.segment_file(ct, tmp_path / "labels.nii.gz")  # on its own grid, the CT fits


def test_the_memory_check_counts_the_slab_slices_the_resampling_uses():
    from LiverTumorSegLib import validation

    assert validation.ALIGNED_SLAB_SLICES == axis_aligned.SLAB_SLICES


def _turned_geometry(degrees_x, degrees_z, spacing_xyz, origin_xyz):
    """A grid turned ``degrees_x`` about the left-right axis, then ``degrees_z`` about the head-foot axis."""
    ax, az = np.deg2rad(degrees_x), np.deg2rad(degrees_z)
    about_x = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(ax), -np.sin(ax)], [0.0, np.sin(ax), np.cos(ax)]])
    about_z = np.array([[np.cos(az), -np.sin(az), 0.0], [np.sin(az), np.cos(az), 0.0], [0.0, 0.0, 1.0]])
    return ImageGeometry(spacing=spacing_xyz, origin=origin_xyz, direction=tuple((about_z @ about_x).ravel()))


# grids where float rounding put a CT's outermost voxel centres a hair (1e-13 voxel) beyond the aligned grid
EDGE_GRIDS = [(28.8, 0.0, (0.7, 0.7, 3.0), (8, 33, 39)), (22.5, 0.0, (0.77734375, 0.77734375, 3.0), (10, 13, 16)),
              (12.0, 17.0, (0.8, 0.8, 2.5), (9, 21, 30)), (30.0, 0.0, (1.5, 1.5, 3.0), (40, 96, 96))]


@pytest.mark.parametrize("degrees_x,degrees_z,spacing_xyz,shape_zyx", EDGE_GRIDS)
def test_labels_come_back_on_every_edge_voxel_of_a_tilted_ct(degrees_x, degrees_z, spacing_xyz, shape_zyx):
    """A label map that is liver everywhere on the aligned grid is liver in every voxel of the CT: its outermost
    voxels (a whole face of a CT tilted about one axis) lay on the aligned grid's edge, where rounding put them up
    to 1e-13 voxel beyond it, and ``scipy``'s ``constant`` mode gave them background (up to 39 edge voxels of a
    10296-voxel CT; a liver the field of view cuts lost its edge row)."""
    for origin in [(-123.4, 87.25, -301.7), (0.1, -0.3, 12.0), (250.0, -250.0, 1000.0)]:
        geometry = _turned_geometry(degrees_x, degrees_z, spacing_xyz, origin)
        grid = axis_aligned.aligned_grid(geometry, shape_zyx, spacing_xyz)
        back = axis_aligned.labels_back(np.ones(grid.shape_zyx, dtype=np.uint8), grid.geometry, geometry, shape_zyx)
        assert np.count_nonzero(back != 1) == 0, origin


class _EverythingLiverEngine:
    """An engine stand-in: every voxel liver, tumor probability 200/255 everywhere."""

    def __init__(self):
        self.package = SimpleNamespace(metadata={}, name="stand-in", path="stand-in")

    def predict(self, volume, progress=None, cancel=None):
        return np.ones(volume.shape_zyx, dtype=np.uint8)

    def predict_with_probability(self, volume, progress=None, cancel=None, class_index=2,
                                 probability_everywhere=True):
        return self.predict(volume), np.full(volume.shape_zyx, 200, dtype=np.uint8)


def test_the_probability_comes_back_on_every_edge_voxel_of_a_tilted_ct():
    """The network's tumor probability is brought back onto the CT's outermost voxels too (it was 0 where their
    centres lay a rounding error beyond the aligned grid)."""
    from LiverTumorSegLib.inference import SegmentationOptions
    from LiverTumorSegLib.inference.segmenter import Segmenter

    shape_zyx = (10, 13, 16)
    geometry = _turned_geometry(22.5, 0.0, (0.77734375, 0.77734375, 3.0), (0.1, -0.3, 12.0))
    volume = CTVolume(np.full(shape_zyx, 60.0, dtype=np.float32), geometry)
    segmenter = Segmenter(SegmentationOptions(), engine=_EverythingLiverEngine())
    output = segmenter.predict(volume)
    assert "network_grid" in output.facts
    assert np.count_nonzero(output.labels != 1) == 0
    assert np.count_nonzero(output.probability != 200) == 0


def test_a_float16_oblique_ct_is_segmented_on_the_aligned_grid_as_on_its_own():
    """A float16 CT (the library's API takes one; the stored-grid path segments it) is resampled onto the aligned
    grid too: scipy's interpolation has no float16, and an oblique float16 CT failed with 'RuntimeError: data type
    not supported', where an axis-aligned one was segmented."""
    geometry = _tilted_geometry(20.0)
    hu, _ = _phantom(geometry)
    half = CTVolume(hu.astype(np.float16), geometry)
    _, result = _segment(half)
    _, reference = _segment(CTVolume(hu, geometry))
    assert "network_grid" in result.report
    assert np.count_nonzero(result.labels != reference.labels) <= 0.001 * hu.size
    assert np.count_nonzero(result.labels == 2) > 0


PYTHON_OBJECTS_BYTES = 64 * 1024
"""What ``tracemalloc`` counts beside the arrays (a few kB of Python objects; the runtime overhead counts them)."""


def _traced_peak_bytes(call):
    """``(result, peak bytes numpy allocated during call())``, by ``tracemalloc`` (scipy imported before)."""
    import importlib
    import tracemalloc

    importlib.import_module("scipy.ndimage")  # imported first: its import's objects would count

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = call()
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    return result, peak


def _fine_thin_tilted_ct(dtype):
    """A thin CT of fine pixels (16 x 128 x 128, 0.4 mm pixels, 1 mm slices) turned 8 degrees, on a 1.6 mm aligned
    grid with fewer voxels than the CT's own, random HU in ``dtype``."""
    shape = (16, 128, 128)
    geometry = _tilted_geometry(8.0, spacing_xyz=(0.4, 0.4, 1.0), shape_zyx=shape)
    hu = np.random.default_rng(0).normal(0.0, 200.0, shape).astype(dtype)
    volume = CTVolume(hu, geometry)
    return volume, axis_aligned.aligned_grid(geometry, shape, (1.6, 1.6, 1.0))


def test_the_memory_check_counts_the_float32_copy_of_a_float16_ct_resampled_onto_the_aligned_grid():
    """scipy reads a float16 CT as a float32 copy (4 bytes per CT voxel) while it resamples it onto the aligned grid:
    the phase ``onto`` counts it (the bytes ``tracemalloc`` measures stay within it; without the copy counted they
    do not), and only for a float16 CT: an int16 one is read as it is."""
    from LiverTumorSegLib import validation

    half, grid = _fine_thin_tilted_ct(np.float16)
    voxels = int(np.prod(half.shape_zyx))
    assert np.prod(grid.shape_zyx) < voxels  # the copy is the larger part of the phase
    phases = {dtype: validation.aligned_grid_phase_bytes(half.shape_zyx, dtype, grid.shape_zyx, 0)
              for dtype in (np.float16, np.int16, np.float32)}
    assert phases[np.float16]["onto"] - phases[np.int16]["onto"] == 4 * voxels
    assert phases[np.int16]["onto"] == phases[np.float32]["onto"]
    _, measured = _traced_peak_bytes(lambda: axis_aligned.resampled_onto(half, grid))
    counted = phases[np.float16]["onto"] - validation.RUNTIME_OVERHEAD_BYTES
    assert 4 * voxels < measured <= counted + PYTHON_OBJECTS_BYTES
    estimate = validation.estimate_aligned_grid_memory_bytes(half.shape_zyx, np.float16, grid.shape_zyx, 0)
    native = validation.estimate_memory_bytes(half.shape_zyx, input_itemsize=2, overhead_bytes=0)
    assert estimate >= native + phases[np.float16]["onto"]


def test_the_probability_comes_back_rounded_in_place_within_the_bytes_the_memory_check_counts():
    """The tumor probability brought back from the aligned grid: the same uint8 values as a float32 copy of the
    aligned probability interpolated and rounded with ``np.rint`` and ``np.clip`` gave, but with one float32 array of
    the CT's grid instead of three (and no float32 copy of the aligned grid): 12 bytes per CT voxel went beyond the
    memory check's count where the CT's grid is not smaller than the aligned one."""
    from LiverTumorSegLib import validation

    volume, grid = _fine_thin_tilted_ct(np.int16)
    probability = np.random.default_rng(1).integers(0, 256, grid.shape_zyx).astype(np.uint8)
    restored, measured = _traced_peak_bytes(lambda: axis_aligned.probability_back(
        probability, grid.geometry, volume.geometry, volume.shape_zyx))
    expected = axis_aligned.resample(probability.astype(np.float32), grid.geometry, volume.geometry,
                                     volume.shape_zyx, 0.0, axis_aligned.BACK_MODE)
    assert restored.dtype == np.uint8
    np.testing.assert_array_equal(restored, np.clip(np.rint(expected), 0, 255).astype(np.uint8))
    phases = validation.aligned_grid_phase_bytes(volume.shape_zyx, np.int16, grid.shape_zyx, 0)
    native_uint8 = int(np.prod(volume.shape_zyx))  # the rounded probability: counted on the CT's own grid
    assert measured <= phases["probability_back"] - validation.RUNTIME_OVERHEAD_BYTES + native_uint8 \
        + PYTHON_OBJECTS_BYTES


def test_the_labels_come_back_within_the_bytes_the_memory_check_counts():
    from LiverTumorSegLib import validation

    volume, grid = _fine_thin_tilted_ct(np.int16)
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, grid.shape_zyx).astype(np.uint8)
    probability = rng.integers(0, 256, grid.shape_zyx).astype(np.uint8)  # held beside it, not measured here
    back, measured = _traced_peak_bytes(lambda: axis_aligned.labels_back(labels, grid.geometry, volume.geometry,
                                                                         volume.shape_zyx))
    phases = validation.aligned_grid_phase_bytes(volume.shape_zyx, np.int16, grid.shape_zyx, 0)
    held = labels.nbytes + probability.nbytes
    assert held + measured <= phases["labels_back"] - validation.RUNTIME_OVERHEAD_BYTES + back.nbytes \
        + PYTHON_OBJECTS_BYTES


def test_the_footprint_runs_are_the_boxes_of_a_tilted_slab_s_band_grown_by_the_margin():
    """A slab turned 45 degrees on a grid of equal spacing: its footprint is a band of 3 rows that moves down one row
    per slice (hand-made here). Runs of 4 slices, margin 1 pixel, 1 context slice: run 0 keeps slices 0-3, whose
    band covers rows 0-5 (+1: rows 0-6, clipped at 0) and columns 2-4 (+1: 1-5), and reads slices 0-4; run 1 keeps
    slices 4-7 (rows 4-9 -> 3-10), reads 3-8; slices 8-9 hold no footprint: no run."""
    inside = np.zeros((10, 12, 8), dtype=bool)
    for z in range(8):
        inside[z, z:z + 3, 2:5] = True
    runs = axis_aligned.footprint_runs(inside, run_slices=4, margin_pixels=1, context_slices=1)
    assert [(r.slices, r.read_slices, r.rows, r.columns) for r in runs] == [
        ((0, 4), (0, 5), (0, 7), (1, 6)),
        ((4, 8), (3, 9), (3, 11), (1, 6))]
    assert runs[1].kept_box == (slice(4, 8), slice(3, 11), slice(1, 6)) and runs[1].kept_in_read == slice(1, 5)
    assert runs[1].read_voxels == 6 * 8 * 5
    wide = axis_aligned.footprint_runs(inside, run_slices=4, margin_pixels=100, context_slices=3)
    assert [(r.read_slices, r.rows, r.columns) for r in wide] == [((0, 7), (0, 12), (0, 8)), ((1, 10), (0, 12), (0, 8))]
    with pytest.raises(ValueError):
        axis_aligned.footprint_runs(inside, run_slices=0)


def test_a_run_s_volume_lies_where_its_box_lies_on_the_aligned_grid():
    grid_geometry = ImageGeometry(spacing=(1.5, 1.5, 3.0), origin=(-30.0, -20.0, 10.0))
    array = np.arange(6 * 10 * 8, dtype=np.float32).reshape(6, 10, 8)
    grid_ct = CTVolume(array, grid_geometry)
    run = axis_aligned.FootprintRun(slices=(2, 4), read_slices=(1, 5), rows=(3, 9), columns=(2, 7))
    part = axis_aligned.run_volume(grid_ct, run)
    assert part.shape_zyx == (4, 6, 5) and np.array_equal(part.array, array[1:5, 3:9, 2:7])
    assert part.geometry.origin == pytest.approx((-30.0 + 2 * 1.5, -20.0 + 3 * 1.5, 10.0 + 1 * 3.0))
    assert np.allclose(part.geometry.direction_matrix, np.eye(3))


def _thin_tilted_slab(degrees=30.0, shape=(8, 48, 40)):
    geometry = _tilted_geometry(degrees, spacing_xyz=(3.0, 3.0, 3.0), shape_zyx=shape)
    hu, _ = _phantom(geometry, shape)
    return CTVolume(hu, geometry)


def test_the_network_runs_only_over_the_footprint_and_gives_background_beyond_it(monkeypatch):
    """A thin slab turned 30 degrees: the network is given runs of at most FOOTPRINT_RUN_SLICES kept slices,
    each cropped to its band (fewer voxels than the whole aligned grid), and an aligned voxel no run's box holds
    is background with probability 0 (the stand-in says liver and 200/255 everywhere it runs)."""
    monkeypatch.setattr(axis_aligned, "FOOTPRINT_MARGIN_PIXELS", 2)
    volume = _thin_tilted_slab()

    class Recording(_EverythingLiverEngine):
        given = []

        def predict_with_probability(self, volume, **kwargs):
            self.given.append(volume)
            return super().predict_with_probability(volume, **kwargs)

    engine = Recording()
    segmenter = _segmenter(engine)
    grid = segmenter._aligned_grid(volume)
    grid_ct = axis_aligned.resampled_onto(volume, grid)
    from LiverTumorSegLib.progress import ProgressReporter

    runs = segmenter._footprint_runs(grid_ct, volume)
    switched = []
    engine.use_torch_for_several_slice_sizes = switched.append  # an automatic ONNX backend gives way to torch
    labels, probability = segmenter._network_over_footprint(grid_ct, runs, ProgressReporter(None), None, True)
    sizes = {tuple(g.shape_zyx[1:]) for g in engine.given}
    assert len(engine.given) > 1 and switched == [len(sizes)]
    assert sum(int(np.prod(g.shape_zyx)) for g in engine.given) < 0.8 * np.prod(grid.shape_zyx)
    inside = axis_aligned.footprint(grid.geometry, grid.shape_zyx, volume.geometry, volume.shape_zyx)
    assert np.all(labels[inside] == 1) and np.all(probability[inside] == 200)  # every footprint voxel: a run's
    assert np.count_nonzero(labels == 0) > 0.2 * labels.size
    assert np.array_equal(labels == 0, probability == 0)


def test_an_oblique_ct_s_labels_over_the_footprint_equal_the_whole_grid_s_when_the_margin_covers_every_slice(
        tmp_path):
    """A real (tiny, untrained) 2.5D network: with a margin wider than the aligned grid each run is given whole
    aligned slices (and its context slices), so its labels and probability equal those of the whole grid given at
    once, although the grid is split into runs of slices (a run read without its context slices differs)."""
    pytest.importorskip("torch")
    from inference_helpers import tiny_unet_package

    from LiverTumorSegLib.inference import SegmentationOptions
    from LiverTumorSegLib.inference.segmenter import Segmenter
    from LiverTumorSegLib.progress import ProgressReporter

    package = tiny_unet_package(tmp_path, context_slices=1)
    volume = _thin_tilted_slab(30.0, (6, 40, 32))
    segmenter = Segmenter(SegmentationOptions(model=str(package.path), device="cpu", threads=1, precision="fp32"))
    segmenter.load()
    grid = segmenter._aligned_grid(volume)
    grid_ct = axis_aligned.resampled_onto(volume, grid)
    inside = axis_aligned.footprint(grid.geometry, grid.shape_zyx, volume.geometry, volume.shape_zyx)
    runs = axis_aligned.footprint_runs(inside, 4, 10 ** 6, segmenter._context_reach_slices(grid_ct))
    assert len(runs) > 2 and all(run.rows == (0, grid.shape_zyx[1]) for run in runs)
    labels, probability = segmenter._network_over_footprint(grid_ct, runs, ProgressReporter(None), None, True)
    whole_labels, whole_probability = segmenter._network_on_grid(grid_ct, ProgressReporter(None), None, True, None,
                                                                 True)
    assert np.count_nonzero(whole_labels) > 0
    np.testing.assert_array_equal(labels, whole_labels)
    np.testing.assert_array_equal(probability, whole_probability)


def test_an_oblique_ct_whose_runs_would_read_the_whole_grid_or_more_gets_whole_slices():
    """A CT long along z turned a little: each run's box spans whole aligned slices, and its context slices are
    read twice, so the runs would give the network more voxels than the whole grid (slower, measured): whole
    slices then, as before, and the report has no footprint."""
    shape = (40, 40, 32)
    volume = _thin_tilted_slab(8.0, shape)
    engine = _HUEngine()
    segmenter = _segmenter(engine)
    grid = segmenter._aligned_grid(volume)
    grid_ct = axis_aligned.resampled_onto(volume, grid)
    assert segmenter._footprint_runs(grid_ct, volume) is None
    result = segmenter.segment_volume(volume, checked=True)
    assert len(engine.given) == 1 and engine.given[0].shape_zyx == tuple(grid.shape_zyx)
    assert "footprint" not in result.report["network_grid"]


def test_a_cancel_between_two_runs_over_the_footprint_stops_before_the_next_run(monkeypatch):
    """The engine's last batch of a run ended as the cancel came (it did not see it): the next run must not start,
    and the way back must not run."""
    from LiverTumorSegLib.errors import CancelledError
    from LiverTumorSegLib.progress import CancellationToken

    token = CancellationToken()

    class CancellingEngine(_HUEngine):
        def predict(self, volume, progress=None, cancel=None):
            labels = super().predict(volume, progress, cancel)
            cancel.cancel()
            return labels

    monkeypatch.setattr(axis_aligned, "FOOTPRINT_MARGIN_PIXELS", 2)
    engine = CancellingEngine()
    volume = _thin_tilted_slab()
    segmenter = _segmenter(engine)
    grid_ct = axis_aligned.resampled_onto(volume, segmenter._aligned_grid(volume))
    assert len(segmenter._footprint_runs(grid_ct, volume)) > 1
    with pytest.raises(CancelledError):
        segmenter.predict(volume, None, token)
    assert len(engine.given) == 1


def test_the_network_over_the_footprint_stays_within_the_memory_check_s_count(tmp_path, monkeypatch):
    """The arrays of an oblique CT's run through a real engine over its footprint (the aligned CT, its labels and
    probability, the footprint mask, each run's network input and outputs; ``tracemalloc``: numpy's allocations)
    stay within the bytes the memory check counts for the whole aligned grid given at once."""
    pytest.importorskip("torch")
    from inference_helpers import tiny_unet_package

    from LiverTumorSegLib import validation
    from LiverTumorSegLib.inference import SegmentationOptions
    from LiverTumorSegLib.inference.segmenter import Segmenter, _estimate_and_check_memory

    package = tiny_unet_package(tmp_path, context_slices=1)
    volume = _thin_tilted_slab(30.0, (8, 96, 64))
    monkeypatch.setattr(axis_aligned, "FOOTPRINT_MARGIN_PIXELS", 4)  # boxes within the slices: several runs
    segmenter = Segmenter(SegmentationOptions(model=str(package.path), device="cpu", threads=1, precision="fp32"))
    segmenter.load()
    segmenter.predict(volume)  # warm: first-call imports and caches are not the CT's
    output, measured = _traced_peak_bytes(lambda: segmenter.predict(volume))
    assert output.facts["network_grid"]["footprint"]["runs"] > 1
    grid = segmenter._aligned_grid(volume)
    native = validation.estimate_memory_bytes(volume.shape_zyx, input_itemsize=4, overhead_bytes=0)
    counted = _estimate_and_check_memory(volume, segmenter.package, None, grid) - native \
        - validation.RUNTIME_OVERHEAD_BYTES
    assert 0 < measured <= counted


def test_the_precision_check_of_an_oblique_ct_s_first_run_stays_this_ct_s(monkeypatch):
    """The engine checks bf16 against fp32 once, on the first volume it is given: over the footprint that is the
    first run, and each later run recorded the check as an earlier CT's (``this_volume`` false), so a failed
    check's warning was dropped from this CT's report. The report keeps the run's check, saying which aligned
    slices it read."""
    class CheckingEngine(_EverythingLiverEngine):
        def __init__(self):
            super().__init__()
            self.calls, self.precision_message = 0, "bf16 labels differ from fp32 on 5 % (stand-in)"

        def predict_with_probability(self, volume, **kwargs):
            self.calls += 1
            self.last_precision = {"requested": "auto", "used": "fp32",
                                   "check": {"passed": False, "slices": [0, 3], "this_volume": self.calls == 1}}
            return super().predict_with_probability(volume, **kwargs)

    monkeypatch.setattr(axis_aligned, "FOOTPRINT_MARGIN_PIXELS", 2)
    engine = CheckingEngine()
    result = _segmenter(engine).segment_volume(_thin_tilted_slab(), checked=True)
    assert engine.calls > 1
    check = result.report["precision"]["check"]
    assert check["this_volume"] is True and check["footprint_run"][0] == 0
    assert engine.precision_message in result.warnings


@pytest.mark.parametrize("preset, runs", [("default", True), ("zscore_body", False), ("two_windows_histscaled", False),
                                          ("window250_equalized", False), ("clahe", False)])
def test_footprint_runs_only_where_a_run_s_box_gives_the_network_the_values_of_whole_aligned_slices(
        monkeypatch, preset, runs):
    """Training caches whole aligned slices; a run's box gave the network other values inside the CT wherever the
    preprocessing reads the whole slice: z-score, histogram scaling or equalization statistics over the box (measured
    on a phantom turned 30 degrees: zscore_body up to 6.8 apart), ``target_size`` (each box resized to 256 x 256: rows
    of 0.55-1.2 mm where training had 1.34 mm), CLAHE's tiles. Those get whole aligned slices, as trained; fixed
    windows (the default preset) keep the runs."""
    from LiverTumorSegLib.preprocessing import PreprocessingConfig

    monkeypatch.setattr(axis_aligned, "FOOTPRINT_MARGIN_PIXELS", 2)
    if preset == "clahe":
        config = PreprocessingConfig(channels=[{"kind": "window", "level": 40.0, "width": 400.0}], equalize="clahe")
    else:
        config = PreprocessingConfig.preset(preset)
    volume = _thin_tilted_slab()
    engine = _HUEngine()
    engine.preprocessing = config
    segmenter = _segmenter(engine)
    grid = segmenter._aligned_grid(volume)
    grid_ct = axis_aligned.resampled_onto(volume, grid)
    found = segmenter._footprint_runs(grid_ct, volume)
    assert (found is not None) == runs
    result = segmenter.segment_volume(volume, checked=True)
    assert ("footprint" in result.report["network_grid"]) == runs
    if not runs:
        assert len(engine.given) == 1 and engine.given[0].shape_zyx == tuple(grid.shape_zyx)
