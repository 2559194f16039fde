"""A resampling's fill outside the original field of view (LiverTumorSegLib.inference.resampling_fill): one exact
value above air over a large region that reaches the edge of the slices is found with its volume, read as outside
the scan (air on the network's copy, no label there, a warning), and real CTs, air held exactly, padding and drawn
phantoms are left alone."""
import logging
from pathlib import Path

import numpy as np
import pytest

from LiverTumorSegLib.inference.resampling_fill import (OUTSIDE_SCAN_HU, find_resampling_fill,
                                                        resampling_fill_warning, without_fill)
from LiverTumorSegLib.volume import CTVolume, ImageGeometry

DATA = Path(__file__).resolve().parents[1] / "Data"
SPACING = (2.0, 2.0, 4.0)  # (x, y, z) mm: one voxel is 0.016 mL
VOXEL_ML = 2.0 * 2.0 * 4.0 / 1000.0


def _body_ct(shape=(8, 96, 96), seed=0, liver_noise_hu=2.0):
    """A noisy body in noisy air, ``(z, y, x)`` int16 HU: fat (-100 HU) and muscle (40 HU), 15 HU of noise, around a
    liver-like core of 60 HU; an ellipse of 40 x 30 pixels' radii, far from the slices' corners."""
    rng = np.random.default_rng(seed)
    z, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot((xx - (w - 1) / 2) / 40.0, (yy - (h - 1) / 2) / 30.0)
    plane = np.select([r <= 0.6, r <= 0.8, r <= 1.0], [60.0, 40.0, -100.0], -1000.0)
    noise = np.where(r <= 0.6, liver_noise_hu, np.where(r <= 1.0, 15.0, 20.0))
    hu = plane[None] + rng.normal(0.0, 1.0, size=shape) * noise[None]
    return np.rint(hu).astype(np.int16)


def _corners(shape=(8, 96, 96), beyond_px=70):
    """The slices' four corners (``(z, y, x)`` bool) as a grid turned 45 degrees in-plane leaves them: pixels farther
    than ``beyond_px`` from the centre in |dx| + |dy|, triangles with 25 pixel legs in a 96 x 96 slice."""
    z, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    corner = np.abs(xx - (w - 1) / 2) + np.abs(yy - (h - 1) / 2) > beyond_px
    return np.broadcast_to(corner, shape).copy()


def _filled(value, dtype=np.int16):
    hu, corners = _body_ct().astype(dtype), _corners()
    hu[corners] = value
    return hu, corners


def test_corners_filled_with_exactly_0_hu_are_found_with_their_volume():
    hu, corners = _filled(0)
    fill = find_resampling_fill(hu, ImageGeometry(spacing=SPACING))
    assert fill is not None and fill.values == [0.0]
    assert np.array_equal(fill.mask, corners)
    assert fill.volume_ml == pytest.approx(corners.sum() * VOXEL_ML, rel=1e-6)
    assert fill.volume_ml > 100  # 8 slices of four 25-pixel triangles
    record = fill.record()
    assert record == {"values_hu": [0.0], "volume_ml": round(fill.volume_ml, 1), "read_as_hu": -1024.0}


def test_a_float_ct_and_another_fill_value_are_found_too():
    hu, corners = _filled(0.0, np.float32)
    hu += np.float32(0.25) * ~corners  # values off the integers: the tissue is still noisy, the fill exact
    fill = find_resampling_fill(hu, ImageGeometry(spacing=SPACING))
    assert fill is not None and np.array_equal(fill.mask, corners)
    hu, corners = _filled(60)  # a fill of the liver's own density
    fill = find_resampling_fill(hu, ImageGeometry(spacing=SPACING))
    assert fill is not None and fill.values == [60.0] and np.array_equal(fill.mask, corners)


def test_a_ct_padded_with_0_to_a_larger_extent_is_found():
    hu = np.pad(_body_ct(), ((0, 0), (0, 0), (16, 0)), constant_values=0)  # 16 columns of 0 HU left of the grid
    fill = find_resampling_fill(hu, ImageGeometry(spacing=SPACING))
    assert fill is not None and fill.mask[:, :, :16].all() and fill.mask[:, :, 16:].sum() == 0
    assert fill.volume_ml == pytest.approx(8 * 96 * 16 * VOXEL_ML, rel=1e-6)  # 196.6 mL


def test_air_and_padding_held_exactly_are_not_a_fill():
    for value in (-1024, -1000, -2048, -3024):
        hu, _ = _filled(value)
        assert find_resampling_fill(hu, ImageGeometry(spacing=SPACING)) is None, value


def test_a_constant_body_away_from_the_edge_and_a_small_fill_are_not_found():
    hu = _body_ct()
    yy, xx = np.mgrid[0:96, 0:96]
    hu[:, np.hypot(xx - 47.5, yy - 47.5) <= 20] = 40  # a constant organ of 40 HU, 10 mL per slice: touches no edge
    assert find_resampling_fill(hu, ImageGeometry(spacing=SPACING)) is None
    hu, small = _body_ct(), np.zeros((8, 96, 96), bool)
    small[0, :48, :48] = _corners()[0, :48, :48]  # one corner of one slice: 5.2 mL, under 10 mL
    hu[small] = 0
    assert 5 < small.sum() * VOXEL_ML < 10
    assert find_resampling_fill(hu, ImageGeometry(spacing=SPACING)) is None
    hu[:2][_corners()[:2]] = 0  # the four corners of two slices: 42 mL
    assert find_resampling_fill(hu, ImageGeometry(spacing=SPACING)).volume_ml == pytest.approx(41.6, abs=0.1)


def test_a_drawn_phantom_whose_constant_body_is_wider_than_the_image_is_not_a_fill():
    yy, xx = np.mgrid[0:96, 0:96]
    plane = np.where(np.hypot((xx - 47.5) / 60.0, (yy - 47.5) / 30.0) <= 1, 40, -1000).astype(np.int16)
    hu = np.repeat(plane[None], 8, axis=0)  # 40 HU reaching both sides; no noise: one value is no sign of a fill
    assert find_resampling_fill(hu, ImageGeometry(spacing=SPACING)) is None


def test_the_bounds_of_a_window_the_ct_was_clipped_to_are_not_a_fill():
    """A CT shared clipped to a window (-150..250 HU here) holds -150 exactly in all its air, reaching the edge: not
    read as a fill (it was, and a liver beside the lungs was then cut by the scan's edge)."""
    hu = np.clip(_body_ct(), -150, 250)
    assert (hu == -150).sum() * VOXEL_ML > 100 and (hu < -150).sum() == 0
    assert find_resampling_fill(hu, ImageGeometry(spacing=SPACING)) is None
    hu[_corners()] = 0  # a resampling's fill in the clipped CT is still found, the window's bound still not
    fill = find_resampling_fill(hu, ImageGeometry(spacing=SPACING))
    assert fill is not None and fill.values == [0.0] and np.array_equal(fill.mask, _corners())


@pytest.mark.parametrize("name", ["example_ct_sm.nii.gz", "ct3slice_ct.nii.gz"])
def test_the_shared_real_cts_hold_no_fill(name):
    from LiverTumorSegLib.io import read_volume

    volume = read_volume(DATA / name)
    assert find_resampling_fill(volume.array, volume.geometry) is None


def test_without_fill_makes_a_copy_with_air_there_and_keeps_the_ct():
    hu, corners = _filled(0)
    volume = CTVolume(hu, ImageGeometry(spacing=SPACING), source="ct.nii.gz")
    before = hu.copy()
    cleaned = without_fill(volume, corners)
    assert np.array_equal(volume.array, before)  # the user's CT is untouched
    assert cleaned.array.dtype == np.int16 and (cleaned.array[corners] == OUTSIDE_SCAN_HU).all()
    assert np.array_equal(cleaned.array[~corners], before[~corners]) and cleaned.geometry == volume.geometry
    unsigned = CTVolume(np.full((2, 8, 8), 40, np.uint16), ImageGeometry(spacing=SPACING))
    mask = np.zeros((2, 8, 8), bool)
    mask[:, 0] = True
    assert without_fill(unsigned, mask).array.dtype == np.float32  # -1024 does not fit in uint16
    assert (without_fill(unsigned, mask).array[mask] == -1024).all()


def test_the_warning_says_how_much_what_was_done_and_what_to_do():
    warning = resampling_fill_warning({"values_hu": [0.0], "volume_ml": 2150.4, "read_as_hu": -1024.0})
    assert warning.startswith("2150 mL of the CT hold exactly 0 HU in regions that reach the edge of its slices")
    assert "read as outside the scan" in warning and "no liver or tumor labelled there" in warning
    assert "Resample (or mask) with a fill of -1024 HU" in warning and "\n" not in warning
    assert resampling_fill_warning(None) is None


class _RecordingEngine:
    """An engine stand-in: records the CT it is given and labels everything above -500 HU liver."""

    def __init__(self):
        from types import SimpleNamespace

        self.package, self.given = SimpleNamespace(metadata={}, name="stand-in", path="stand-in"), []

    def predict(self, volume, progress=None, cancel=None):
        self.given.append(volume)
        return (np.asarray(volume.array) > -500).astype(np.uint8)


def _segmenter(engine, **options):
    from LiverTumorSegLib.inference import SegmentationOptions
    from LiverTumorSegLib.inference.postprocess import PostprocessingOptions
    from LiverTumorSegLib.inference.segmenter import Segmenter

    return Segmenter(SegmentationOptions(postprocessing=PostprocessingOptions.disabled(), **options), engine=engine)


def test_segment_gives_the_network_air_in_the_fill_and_labels_nothing_there():
    hu, corners = _filled(0)
    volume = CTVolume(hu, ImageGeometry(spacing=SPACING))
    before = hu.copy()
    engine = _RecordingEngine()
    result = _segmenter(engine).segment_volume(volume, checked=True)
    given = np.asarray(engine.given[0].array)
    assert (given[corners] == -1024).all() and np.array_equal(given[~corners], before[~corners])
    assert np.array_equal(volume.array, before)  # the caller's CT as it was
    assert result.labels[corners].max() == 0 and result.labels[~corners].sum() > 0
    record = result.report["resampling_fill"]
    assert record["values_hu"] == [0.0] and record["volume_ml"] == pytest.approx(corners.sum() * VOXEL_ML, abs=0.1)
    warning = [w for w in result.warnings if "reach the edge of its slices" in w]
    assert len(warning) == 1 and warning[0].startswith(f"{record['volume_ml']:.0f} mL of the CT hold exactly 0 HU")
    assert result.report["warnings"] == result.warnings


def test_a_ct_without_a_fill_is_given_to_the_network_as_it_is():
    volume = CTVolume(_body_ct(), ImageGeometry(spacing=SPACING))
    engine = _RecordingEngine()
    result = _segmenter(engine, body_size_scaling=False).segment_volume(volume, checked=True)
    assert engine.given[0] is volume and "resampling_fill" not in result.report
    assert not any("reach the edge of its slices" in w for w in result.warnings)


def test_the_network_s_liver_in_a_liver_dense_fill_is_cleared_and_the_fill_is_read_as_air():
    from inference_helpers import oracle_package, oracle_predictor

    from LiverTumorSegLib.inference.engine import SliceInferenceEngine

    seen = []

    def predictor(x_nchw):  # the oracle labels 55-65 HU liver: a 60 HU fill too, if it were given as it is
        seen.append(x_nchw.copy())
        return oracle_predictor(x_nchw)

    hu, corners = _filled(60)
    volume = CTVolume(hu, ImageGeometry(spacing=SPACING))
    engine = SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=8, batch_predictor=predictor)
    result = _segmenter(engine).segment_volume(volume, checked=True)
    given = np.concatenate(seen)[:, 0]  # (z, y, x) windowed 0..100 HU: air is 0
    assert given.shape == hu.shape and given[corners].max() == 0.0
    assert result.labels[corners].max() == 0
    liver = (result.labels == 1) & ~corners
    assert liver.sum() > 0.8 * ((np.abs(hu.astype(float) - 60) <= 5) & ~corners).sum()


def test_segment_file_says_it_on_stderr_and_in_the_report(tmp_path, caplog):
    from LiverTumorSegLib.io import read_volume, write_volume

    hu, corners = _filled(0)
    path = write_volume(tmp_path / "resampled.nii.gz", CTVolume(hu, ImageGeometry(spacing=SPACING)))
    with caplog.at_level(logging.WARNING):
        result = _segmenter(_RecordingEngine()).segment_file(path, tmp_path / "seg.nii.gz",
                                                             report_path=tmp_path / "r.json")
    said = [r.getMessage() for r in caplog.records if "reach the edge of its slices" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("warning: ")
    import json

    report = json.loads((tmp_path / "r.json").read_text())
    assert any("reach the edge of its slices" in w for w in report["warnings"])
    assert report["resampling_fill"]["values_hu"] == [0.0]
    assert np.array_equal(read_volume(path).array, hu)  # the input file as it was
    assert result.labels[corners].max() == 0


def test_a_body_the_fill_cuts_is_not_measured_as_a_small_body():
    """An adult body (330 x 250 mm) whose left 160 mm lie beyond the old grid (0 HU fill): the part left would read
    as a child's body (about 220 mm) and be enlarged for the network, unless the fill counts as outside the scan."""
    from types import SimpleNamespace

    from LiverTumorSegLib.inference.body_size import PACKAGE_KEY

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:200, 0:200]
    r = np.hypot((xx - 99.5) / 82.5, (yy - 99.5) / 62.5)  # radii in 2 mm pixels
    plane = np.select([r <= 0.7, r <= 1.0], [50.0, -100.0], -1000.0)
    hu = np.rint(plane[None] + rng.normal(0.0, 15.0, size=(6, 200, 200))).astype(np.int16)
    hu[:, :, :80] = 0
    volume = CTVolume(hu, ImageGeometry(spacing=(2.0, 2.0, 5.0)))
    engine = _RecordingEngine()
    engine.package = SimpleNamespace(metadata={PACKAGE_KEY: {"adult": 315.0}}, name="stand-in", path="stand-in")
    result = _segmenter(engine).segment_volume(volume, checked=True)
    assert result.report["resampling_fill"]["volume_ml"] == pytest.approx(6 * 200 * 80 * 0.02, rel=1e-6)
    assert result.report["body_size"]["in_plane_scale"] == 1.0 and result.report["body_size"]["diameter_mm"] is None
    assert engine.given[0].geometry.spacing == (2.0, 2.0, 5.0)


def test_a_batch_reads_the_fill_as_a_single_run_does(tmp_path):
    """The batch's reader thread prepares the network's CT ahead (Segmenter.network_volume): the case with a fill gets
    the same labels, record and warning as a single run, the case without one none."""
    pytest.importorskip("torch")
    import json

    from inference_helpers import oracle_package, oracle_predictor

    from LiverTumorSegLib.inference.batch import find_cases, segment_batch
    from LiverTumorSegLib.inference.engine import SliceInferenceEngine
    from LiverTumorSegLib.io import read_label_map, write_volume

    hu, corners = _filled(60)
    (tmp_path / "cts").mkdir()
    write_volume(tmp_path / "cts" / "filled.nii.gz", CTVolume(hu, ImageGeometry(spacing=SPACING)))
    write_volume(tmp_path / "cts" / "plain.nii.gz", CTVolume(_body_ct(seed=1), ImageGeometry(spacing=SPACING)))
    engine = SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=8,
                                  batch_predictor=oracle_predictor)
    statuses = segment_batch(find_cases(tmp_path / "cts", tmp_path / "out"), _segmenter(engine))
    assert [s.status for s in statuses] == ["done", "done"]
    single = _segmenter(engine).segment_file(tmp_path / "cts" / "filled.nii.gz", tmp_path / "single.nii.gz")
    batch = read_label_map(tmp_path / "out" / "filled.nii.gz").array
    assert np.array_equal(batch, single.labels) and batch[corners].max() == 0 and (batch == 1).sum() > 0
    filled = json.loads((tmp_path / "out" / "reports" / "filled.json").read_text())
    plain = json.loads((tmp_path / "out" / "reports" / "plain.json").read_text())
    assert filled["resampling_fill"] == single.report["resampling_fill"] and "resampling_fill" not in plain
    assert sum("reach the edge of its slices" in w for w in filled["warnings"]) == 1
    assert not any("reach the edge of its slices" in w for w in plain["warnings"])


def test_a_lesion_and_liver_beside_the_fill_are_cut_by_the_scan_s_edge():
    """After the network the fill reads as the scanner's padding: a lesion beside it touches the scan's edge (its
    volume and axes are lower bounds), and the liver beside it is cut by the field of view."""
    from inference_helpers import oracle_package, oracle_predictor

    from LiverTumorSegLib.inference.engine import SliceInferenceEngine
    from LiverTumorSegLib.inference.postprocess import PostprocessingOptions
    from LiverTumorSegLib.inference.segmenter import Segmenter
    from LiverTumorSegLib.inference import SegmentationOptions

    rng = np.random.default_rng(3)
    hu = _body_ct()
    hu[:, :, :30] = 0  # the old grid ended at x = 30: through the body and its liver-like core
    hu[2:6, 44:52, 30:36] = np.rint(20 + rng.normal(0.0, 2.0, size=(4, 8, 6)))  # a lesion against that edge
    volume = CTVolume(hu, ImageGeometry(spacing=SPACING))
    engine = SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=8,
                                  batch_predictor=oracle_predictor)
    options = SegmentationOptions(postprocessing=PostprocessingOptions(min_lesion_ml=0))
    result = Segmenter(options, engine=engine).segment_volume(volume, checked=True)
    assert result.report["resampling_fill"]["volume_ml"] == pytest.approx(8 * 96 * 30 * VOXEL_ML, abs=0.05)
    # (the oracle also calls the 40 HU muscle's noisy voxels of 10-30 HU tumor: the lesion is the one placed)
    lesion = next(d for d in result.report["lesions"] if d["bounding_box_zyx"] == [[2, 6], [44, 52], [30, 36]])
    assert lesion["touches_scan_edge"] is True and lesion["volume_ml"] == pytest.approx(4 * 8 * 6 * VOXEL_ML)
    assert any("field of view cuts the liver" in w for w in result.warnings)
    assert result.labels[:, :, :30].max() == 0


def test_measure_with_the_ct_reads_the_fill_as_the_scanner_s_padding(tmp_path, capsys):
    """``measure --ct`` of a label map whose lesion lies against the old grid's edge: cut by the scan's edge (a lower
    bound, no RECIST target), not reported whole, and the fill is named on stderr; the CT file is left as it is."""
    import json

    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.io import read_volume, write_label_map, write_volume

    hu = _body_ct()
    hu[:, :, :30] = 0
    yy, xx = np.mgrid[0:96, 0:96]
    labels = np.zeros(hu.shape, np.uint8)
    labels[:, np.hypot((xx - 47.5) / 40.0, (yy - 47.5) / 30.0) <= 0.6] = 1
    labels[:, :, :30] = 0
    labels[2:6, 44:52, 30:36] = 2
    geometry = ImageGeometry(spacing=SPACING)
    ct_path = write_volume(tmp_path / "ct.nii.gz", CTVolume(hu, geometry))
    labels_path = write_label_map(tmp_path / "labels.nii.gz", labels, geometry)
    assert main(["measure", str(labels_path), "--ct", str(ct_path), "-o", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    (lesion,) = report["lesions"]
    assert lesion["touches_scan_edge"] is True and report["recist"]["target_lesion_ids"] == []
    said = [line for line in capsys.readouterr().err.splitlines() if "reach the edge of its slices" in line]
    assert len(said) == 1 and said[0].startswith(f"warning: {8 * 96 * 30 * VOXEL_ML:.0f} mL of the CT hold exactly 0")
    assert "read as outside the scan, as the scanner's padding" in said[0]
    assert sum("reach the edge of its slices" in w for w in report["warnings"]) == 1
    assert np.array_equal(read_volume(ct_path).array, hu)


def test_preprocess_previews_the_fill_as_segment_gives_it_to_the_network(tmp_path, monkeypatch, capsys):
    """``preprocess`` shows what the network is fed: the fill as air (-1024 HU), with segment's warning."""
    import LiverTumorSegLib.preprocessing as preprocessing
    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.io import write_volume

    given = []
    monkeypatch.setattr(preprocessing, "render_preview",
                        lambda volume, config, output, **kw: given.append(np.asarray(volume.array)) or output)
    hu, corners = _filled(0)
    path = write_volume(tmp_path / "ct.nii.gz", CTVolume(hu, ImageGeometry(spacing=SPACING)))
    assert main(["preprocess", str(path), "-o", str(tmp_path / "p.png")]) == 0
    assert (given[0] == 0).sum() == (hu[~corners] == 0).sum()  # only the body's own 0 HU voxels are left
    assert (given[0] == -1024).sum() == corners.sum() + (hu == -1024).sum()
    said = [line for line in capsys.readouterr().err.splitlines() if "reach the edge of its slices" in line]
    assert len(said) == 1 and "air, -1024 HU, to the network" in said[0]


def test_the_network_s_labels_in_the_fill_are_cleared_without_a_copy():
    """Labels and probability were copied (np.where) to clear the fill after the memory check had run: two uint8 grids
    it never saw (tracemalloc, oracle engine, a 40 x 256 x 256 float32 CT: 17.5 MiB more at the peak than without a
    fill, 12.5 MiB of it made before the check; now 12.5 MiB, 29 Nov 2026). They are cleared in place now. (A
    tracemalloc test of the whole run took 18 s of the suite; this one checks the arrays themselves.)"""
    from LiverTumorSegLib.inference.segmenter import _outside_scan_cleared

    hu, corners = _filled(0)
    volume = CTVolume(hu, ImageGeometry(spacing=SPACING))
    segmenter = _segmenter(_RecordingEngine(), body_size_scaling=False)
    output = segmenter.predict(volume)
    assert output.outside_scan is not None and output.labels[corners].max() == 0  # cleared in predict
    labels, probability, checked_hu = _outside_scan_cleared(volume, output)
    assert labels is output.labels and probability is output.probability
    assert (checked_hu[corners] == -3024).all() and np.array_equal(volume.array, hu)


def test_a_coronally_stored_ct_is_searched_in_its_axial_slices_as_the_training_cache_searches_it():
    """The search ran along the stored slices: a coronally stored CT was searched in coronal planes and found fewer
    fill voxels (156 of 27,144 here; 560 on a real CT turned 12 degrees) than the canonical search the training cache
    makes, so segment and training gave the network different values there, up to 1024 HU apart (the train/infer
    audit). The same fill is found whatever the storage order, on the CT's own grid."""
    shape = (12, 96, 96)
    hu = _body_ct(shape)
    zz, yy, xx = np.mgrid[0:shape[0], 0:shape[1], 0:shape[2]]
    corner = np.abs(xx - 47.5) + np.abs(yy - 47.5) > 80 - 3 * zz  # the old grid's box turned about an oblique axis
    hu[corner] = 0
    axial = find_resampling_fill(hu, ImageGeometry(spacing=SPACING))
    assert axial is not None and np.array_equal(axial.mask, corner)
    # array axes (y, z, x): i = x (L), j = z (S), k = y (P)
    coronal = find_resampling_fill(np.ascontiguousarray(hu.transpose(1, 0, 2)),
                                   ImageGeometry(spacing=(SPACING[0], SPACING[2], SPACING[1]),
                                                 direction=(1, 0, 0, 0, 0, 1, 0, 1, 0)))
    assert coronal is not None and coronal.mask.shape == (96, 12, 96)
    assert np.array_equal(coronal.mask.transpose(1, 0, 2), corner)
    assert coronal.values == axial.values and coronal.volume_ml == pytest.approx(axial.volume_ml)
    flipped = find_resampling_fill(np.ascontiguousarray(hu[::-1, :, ::-1]),
                                   ImageGeometry(spacing=SPACING, direction=(-1, 0, 0, 0, 1, 0, 0, 0, -1)))
    assert np.array_equal(flipped.mask, corner[::-1, :, ::-1])
