"""Body-size scaling (LiverTumorSegLib.inference.body_size): a body's area-equivalent diameter on known shapes, when
a CT is scaled for the network and by how much, and that the network gets the scaled CT while the labels, volumes
and report stay on the CT's own grid."""
import numpy as np
import pytest

from LiverTumorSegLib.inference.body_size import (MAX_IN_PLANE_SCALE, PACKAGE_KEY, body_diameter_mm,
                                                  body_size_record, body_size_warning, in_plane_scale,
                                                  training_body_diameter_mm, with_in_plane_scale)
from LiverTumorSegLib.volume import CTVolume, ImageGeometry


def _ellipse_body(diameter_lr_mm, diameter_ap_mm, shape=(6, 256, 256), spacing=1.0, padding_radius_px=None):
    """A water-density elliptic body (40 HU) in air, (z, y, x) on an LPS identity grid of ``spacing`` mm pixels;
    optionally padding (-3024) outside a round field of view of ``padding_radius_px`` pixels."""
    z, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    inside = ((xx - cx) * spacing / (diameter_lr_mm / 2)) ** 2 + ((yy - cy) * spacing / (diameter_ap_mm / 2)) ** 2 <= 1
    plane = np.where(inside, 40, -1000).astype(np.int16)
    if padding_radius_px is not None:
        plane[(xx - cx) ** 2 + (yy - cy) ** 2 > padding_radius_px ** 2] = -3024
    return np.repeat(plane[None], z, axis=0), ImageGeometry(spacing=(spacing, spacing, 5.0))


def test_the_diameter_of_an_elliptic_body_is_its_area_equivalent_diameter():
    hu, geometry = _ellipse_body(160.0, 100.0)
    expected = np.sqrt(160.0 * 100.0)  # area pi ab = pi (d/2)^2 -> d = sqrt(lr * ap) = 126.5 mm
    record = body_diameter_mm(hu, geometry)
    assert record["diameter_mm"] == pytest.approx(expected, abs=3.0)
    assert record["slices_measured"] == 6 and record["slices_cut"] == 0


def test_a_body_with_gas_inside_counts_its_whole_area_and_a_distant_arm_is_left_out():
    hu, geometry = _ellipse_body(160.0, 100.0)
    hu[:, 120:136, 120:136] = -1000  # bowel gas: a hole, filled
    hu[:, 10:30, 10:30] = 40  # a part elsewhere, smaller than the trunk
    assert body_diameter_mm(hu, geometry)["diameter_mm"] == pytest.approx(np.sqrt(160.0 * 100.0), abs=3.0)


def test_a_body_cut_by_the_image_or_a_round_field_of_view_is_not_measured():
    hu, geometry = _ellipse_body(300.0, 200.0)  # wider than the 256 mm image: cut at both sides
    record = body_diameter_mm(hu, geometry)
    assert record["diameter_mm"] is None and record["slices_cut"] == 6
    hu, geometry = _ellipse_body(200.0, 150.0, padding_radius_px=90)  # a 180 mm round field of view cuts it
    assert body_diameter_mm(hu, geometry)["diameter_mm"] is None
    hu, geometry = _ellipse_body(160.0, 100.0, padding_radius_px=120)  # the field of view around it: measured
    assert body_diameter_mm(hu, geometry)["diameter_mm"] == pytest.approx(126.5, abs=3.0)


def test_air_only_gives_no_diameter():
    hu = np.full((3, 64, 64), -1000, np.int16)
    assert body_diameter_mm(hu, ImageGeometry(spacing=(1.0, 1.0, 5.0)))["diameter_mm"] is None


def test_the_scale_acts_only_below_three_quarters_of_the_smallest_training_body():
    assert in_plane_scale(250.0, 315.0) == 1.0  # 250 >= 0.75 x 315 = 236
    assert in_plane_scale(200.0, 315.0) == pytest.approx(0.9 * 315.0 / 200.0)
    assert in_plane_scale(50.0, 315.0) == MAX_IN_PLANE_SCALE
    assert in_plane_scale(None, 315.0) == 1.0 and in_plane_scale(200.0, None) == 1.0
    assert training_body_diameter_mm({PACKAGE_KEY: {"a": 341.8, "b": 324.7, "c": None}}) == 324.7
    assert training_body_diameter_mm({PACKAGE_KEY: {"c": None}}) is None and training_body_diameter_mm({}) is None
    assert training_body_diameter_mm({PACKAGE_KEY: {"a": True, "b": float("nan")}}) is None


def test_the_network_volume_scales_the_two_in_plane_spacings_of_any_stored_orientation():
    hu, geometry = _ellipse_body(160.0, 100.0, shape=(4, 64, 64))
    scaled = with_in_plane_scale(CTVolume(hu, geometry), 2.0)
    assert scaled.geometry.spacing == (2.0, 2.0, 5.0) and scaled.array is hu
    # a coronal stack: array axis 1 (j) runs head to foot, so i (x) and k (z) are in-plane
    coronal = ImageGeometry(spacing=(1.0, 3.0, 1.5), direction=(1, 0, 0, 0, 0, 1, 0, -1, 0))
    assert with_in_plane_scale(CTVolume(hu, coronal), 2.0).geometry.spacing == (2.0, 3.0, 3.0)


def test_the_record_and_warning_say_what_was_measured_and_done():
    hu, geometry = _ellipse_body(160.0, 100.0)
    record = body_size_record(CTVolume(hu, geometry), 315.0)
    assert record["training_diameter_mm"] == 315.0
    assert record["in_plane_scale"] == pytest.approx(0.9 * 315.0 / record["diameter_mm"], abs=0.001)
    from LiverTumorSegLib.errors import cli_wording

    warning = body_size_warning(record)
    assert "enlarged 2.2" in warning and "(315 mm)" in warning and "body_size_scaling=False" in warning
    with cli_wording():  # the command line (and the Slicer panel's child) names the flag
        assert body_size_warning(record).endswith("run again with --no-body-size-scaling.")
    assert body_size_warning(body_size_record(CTVolume(hu, geometry), None)) is None


class _RecordingEngine:
    """An engine stand-in: records the CT it is given and labels everything above 0 HU liver."""

    def __init__(self, package):
        self.package, self.given = package, []

    def predict(self, volume, progress=None, cancel=None):
        self.given.append(volume)
        return (np.asarray(volume.array) > 0).astype(np.uint8)


def _segment(volume, metadata, scaling=True):
    from types import SimpleNamespace

    from LiverTumorSegLib.inference import SegmentationOptions
    from LiverTumorSegLib.inference.segmenter import Segmenter

    engine = _RecordingEngine(SimpleNamespace(metadata=metadata, name="stand-in", path="stand-in"))
    segmenter = Segmenter(SegmentationOptions(body_size_scaling=scaling), engine=engine)
    return segmenter, engine, segmenter.segment_volume(volume, checked=True)


def test_segment_gives_the_network_a_small_body_enlarged_and_measures_on_the_true_grid():
    hu, geometry = _ellipse_body(160.0, 100.0, shape=(4, 200, 200))
    volume = CTVolume(hu, geometry)
    segmenter, engine, result = _segment(volume, {PACKAGE_KEY: {"adult": 315.0}})
    given = engine.given[0]
    scale = result.report["body_size"]["in_plane_scale"]
    assert scale > 2.0 and given.geometry.spacing == pytest.approx((scale, scale, 5.0)) and given.array is hu
    assert result.labels.shape == hu.shape and result.geometry == geometry
    # the liver volume is the body's on the true 1 x 1 x 5 mm grid: 4 slices x pi x 80 x 50 mm^2
    assert result.report["liver_volume_ml"] == pytest.approx(4 * np.pi * 80 * 50 * 5 / 1000, rel=0.02)
    assert any("enlarged" in w for w in result.warnings)
    assert segmenter._network_volumes == {}  # nothing held after the run

    _, engine, result = _segment(volume, {PACKAGE_KEY: {"adult": 315.0}}, scaling=False)
    assert engine.given[0] is volume and "body_size" not in result.report
    assert not any("enlarged" in w for w in result.warnings)
    _, engine, result = _segment(volume, {})  # a package without training sizes: never scaled
    assert engine.given[0] is volume and result.report["body_size"]["in_plane_scale"] == 1.0


def test_a_model_whose_grid_ignores_pixel_spacing_is_not_said_to_get_an_enlarged_ct():
    """The scaling multiplies the pixel spacing; a package of native pixels (target_spacing_mm null: the presets
    zscore_body, window250_equalized) or of a fixed slice size (target_size) never reads it, so its input was
    unchanged while the report said 'given the CT enlarged 1.66x' (the train/infer audit). Such a CT is given as it
    is, and the record says why."""
    from LiverTumorSegLib.preprocessing.config import PreprocessingConfig

    hu, geometry = _ellipse_body(160.0, 100.0, shape=(4, 200, 200))
    volume = CTVolume(hu, geometry)
    for config, said in ((PreprocessingConfig(target_spacing_mm=None), "target_spacing_mm null"),
                         (PreprocessingConfig(target_spacing_mm=None, target_size=(256, 256)), "target_size")):
        # the engine's config; the package object's (its metadata without one: the review); the recorded one
        for known in ("engine", "package", "metadata"):
            metadata = {PACKAGE_KEY: {"adult": 315.0}}
            if known == "metadata":
                metadata["preprocessing"] = config.to_dict()
            package = __import__("types").SimpleNamespace(metadata=metadata, name="s", path="s")
            if known == "package":
                package.preprocessing = config
            engine = _RecordingEngine(package)
            if known == "engine":
                engine.preprocessing = config
            from LiverTumorSegLib.inference import SegmentationOptions
            from LiverTumorSegLib.inference.segmenter import Segmenter

            result = Segmenter(SegmentationOptions(), engine=engine).segment_volume(volume, checked=True)
            record = result.report["body_size"]
            assert engine.given[0] is volume and record["in_plane_scale"] == 1.0, (said, known)
            assert said in record["not_scaled"] and record["diameter_mm"] < 200
            assert not any("enlarged" in w for w in result.warnings)
    _, engine, result = _segment(volume, {PACKAGE_KEY: {"adult": 315.0},
                                          "preprocessing": PreprocessingConfig().to_dict()})  # 1.5 mm: scaled
    assert result.report["body_size"]["in_plane_scale"] > 2.0 and "not_scaled" not in result.report["body_size"]


def test_an_adult_sized_body_is_given_as_it_is():
    hu, geometry = _ellipse_body(330.0, 250.0, shape=(3, 200, 200), spacing=2.0)
    volume = CTVolume(hu, geometry)
    _, engine, result = _segment(volume, {PACKAGE_KEY: {"adult": 315.0}})
    assert engine.given[0] is volume and result.report["body_size"]["in_plane_scale"] == 1.0
    assert not any("enlarged" in w for w in result.warnings)


def test_early_preparation_and_the_run_share_one_network_volume():
    from LiverTumorSegLib.inference import SegmentationOptions
    from LiverTumorSegLib.inference.segmenter import Segmenter
    from types import SimpleNamespace

    hu, geometry = _ellipse_body(160.0, 100.0, shape=(2, 200, 200))
    volume = CTVolume(hu, geometry)
    segmenter = Segmenter(SegmentationOptions(), package=SimpleNamespace(metadata={PACKAGE_KEY: {"a": 315.0}}))
    first, record = segmenter.network_volume(volume)
    assert first is not volume and segmenter.network_volume(volume)[0] is first  # the object an early prep used
    assert segmenter._take_network_volume(volume)[0] is first and segmenter._network_volumes == {}


def test_the_record_script_writes_each_training_ct_s_body_diameter_into_the_package(tmp_path, capsys):
    pytest.importorskip("torch")
    from inference_helpers import tiny_unet_package
    from script_helpers import load_script

    from LiverTumorSegLib.io import write_volume
    from LiverTumorSegLib.package import read_package_metadata, rewrite_package_metadata

    small = write_volume(tmp_path / "small.nii.gz", CTVolume(*_ellipse_body(160.0, 100.0, shape=(3, 200, 200))))
    cut = write_volume(tmp_path / "cut.nii.gz", CTVolume(*_ellipse_body(300.0, 200.0, shape=(3, 256, 256))))
    package = tiny_unet_package(tmp_path).path
    files = [{"case": "small", "image": str(tmp_path / "moved.nii.gz")}, {"case": "cut", "image": str(cut)}]
    rewrite_package_metadata(package, lambda meta: meta.setdefault("training", {}).update(data_files=files))
    script = load_script("scripts/record_training_body_size.py", "record_training_body_size")
    before = package.read_bytes()
    assert script.main([str(package)]) == 2  # a listed CT that is not there: nothing written
    assert "--image small=PATH" in capsys.readouterr().err and package.read_bytes() == before
    assert script.main([str(package), "--image", "other=x.nii.gz"]) == 2 and package.read_bytes() == before
    assert script.main([str(package), "--image", f"small={small}"]) == 0
    recorded = read_package_metadata(package)[PACKAGE_KEY]
    assert recorded["cut"] is None and recorded["small"] == pytest.approx(np.sqrt(160.0 * 100.0), abs=3.0)
    assert training_body_diameter_mm(read_package_metadata(package)) == recorded["small"]
    assert "cut: cut by the field of view (null)" in capsys.readouterr().out
    # a package from before data_files were recorded names its cases only (the v2 family packages): --image gives
    # each one's file (it was refused as 'training data unknown' whatever --image said)
    (tmp_path / "older").mkdir()
    older = tiny_unet_package(tmp_path / "older").path
    rewrite_package_metadata(older, lambda meta: meta.setdefault("training", {}).update(
        cases=["small", "cut"], data_files=[]))
    before = older.read_bytes()
    assert script.main([str(older), "--image", f"small={small}"]) == 2 and older.read_bytes() == before
    assert "give each with --image CASE=PATH; missing: cut" in capsys.readouterr().err
    assert script.main([str(older), "--image", f"small={small}", "--image", f"cut={cut}"]) == 0
    assert read_package_metadata(older)[PACKAGE_KEY] == recorded


def test_the_bundled_default_records_its_training_bodies():
    from LiverTumorSegLib.package import read_package_metadata, resolve_model

    recorded = read_package_metadata(resolve_model("default"))[PACKAGE_KEY]
    # v10 (28 Nov 2026), measured by train with the touching table left out (v3 recorded 341.8 and 324.7 mm, measured
    # before that); the abdomen-pelvis CT's body is cut by the image
    assert recorded == {"ct3slice_ct": 341.3, "example_ct_dicom20": 324.6, "example_ct_full112": None}


def test_the_real_sample_measures_as_an_adult_and_is_not_scaled():
    from pathlib import Path

    from LiverTumorSegLib.io import read_volume

    ct = read_volume(Path(__file__).resolve().parents[2] / "Testing" / "Data" / "example_ct_sm.nii.gz")
    record = body_size_record(ct, 324.7)
    assert record["diameter_mm"] == pytest.approx(306.2, abs=3.0) and record["in_plane_scale"] == 1.0


@pytest.mark.parametrize("diameter_mm", [160.0, 330.0])  # scaled, and given as it is
def test_a_ct_prepared_and_then_refused_is_not_held_by_the_segmenter(diameter_mm):
    """A batch's reader (or segment_file's early preparation) asks for the network volume; when the CT is then
    refused (its memory check, a cancel) predict never takes it: the CT must go when its caller lets go of it."""
    import gc
    import weakref
    from types import SimpleNamespace

    from LiverTumorSegLib.inference import SegmentationOptions
    from LiverTumorSegLib.inference.segmenter import Segmenter

    segmenter = Segmenter(SegmentationOptions(), package=SimpleNamespace(metadata={PACKAGE_KEY: {"a": 315.0}}))
    hu, geometry = _ellipse_body(diameter_mm, diameter_mm * 0.7, shape=(2, 200, 200), spacing=2.0)
    volume = CTVolume(hu, geometry)
    segmenter.network_volume(volume)
    voxels = weakref.ref(hu)
    del hu, volume
    gc.collect()
    assert voxels() is None and segmenter._network_volumes == {}


def test_the_memory_check_counts_the_enlarged_network_grid(tmp_path, monkeypatch):
    """A CT given to the network enlarged 2.2x in-plane is resampled to about 5x more network pixels than as it is:
    the memory check before the network must count those, not the CT's own grid (on the bundled model's grid the
    20-slice CT shrunk to 0.6x, enlarged 1.5x, needs 631 MiB where its own grid counts 472 MiB)."""
    pytest.importorskip("torch")
    from inference_helpers import tiny_unet_package

    from LiverTumorSegLib import validation
    from LiverTumorSegLib.errors import ResourceError
    from LiverTumorSegLib.inference import SegmentationOptions
    from LiverTumorSegLib.inference.segmenter import Segmenter
    from LiverTumorSegLib.io import write_volume
    from LiverTumorSegLib.package import rewrite_package_metadata

    package = tiny_unet_package(tmp_path).path
    rewrite_package_metadata(package, lambda meta: meta.update({PACKAGE_KEY: {"adult": 315.0}}))
    volume = CTVolume(*_ellipse_body(160.0, 100.0, shape=(3, 64, 64), spacing=3.0))  # the network grid's size
    ct = write_volume(tmp_path / "child.nii.gz", volume)
    config = Segmenter(SegmentationOptions(model=str(package), device="cpu")).load().package.preprocessing
    scale = in_plane_scale(body_diameter_mm(volume.array, volume.geometry)["diameter_mm"], 315.0)
    as_given = validation.check_network_memory(volume, config, available_bytes=2 ** 60) - volume.array.nbytes
    enlarged = validation.check_network_memory(with_in_plane_scale(volume, scale), config,
                                               available_bytes=2 ** 60) - volume.array.nbytes
    assert enlarged > as_given + 2 ** 23  # both hold the same fixed share (the runtime's)
    between = (as_given + enlarged) // 2
    monkeypatch.setattr(validation, "available_memory_bytes", lambda *args, **kwargs: between)
    segmenter = Segmenter(SegmentationOptions(model=str(package), device="cpu", threads=1))
    with pytest.raises(ResourceError, match="enlarged"):
        segmenter.segment_file(ct, tmp_path / "labels.nii.gz")
    segmenter = Segmenter(SegmentationOptions(model=str(package), device="cpu", threads=1, body_size_scaling=False))
    segmenter.segment_file(ct, tmp_path / "labels.nii.gz")  # as it is, the CT fits


def test_two_stage_reports_the_liver_left_out_of_its_crop_in_true_millilitres():
    """Two-stage mode runs on the enlarged CT; the liver parts its crop leaves out are reported in mL, which must be
    the CT's own (its true voxel size), not the enlarged grid's (the in-plane scale squared more)."""
    from types import SimpleNamespace

    from LiverTumorSegLib.inference import SegmentationOptions
    from LiverTumorSegLib.inference.segmenter import Segmenter

    hu, geometry = _ellipse_body(160.0, 100.0, shape=(40, 200, 200))
    hu = hu.copy()
    hu[24:] = -1000
    hu[34:38, 90:110, 90:110] = 40  # a separate 4 x 20 x 20 mm^3 "liver" part (8 mL) far below the body's slices
    engine = _RecordingEngine(SimpleNamespace(metadata={PACKAGE_KEY: {"adult": 315.0}}, name="stand-in",
                                              path="stand-in"))
    segmenter = Segmenter(SegmentationOptions(two_stage=True), engine=engine)
    result = segmenter.segment_volume(CTVolume(hu, geometry), checked=True)
    assert result.report["body_size"]["in_plane_scale"] > 2.0  # the CT was enlarged
    outside = result.report["two_stage_record"]["parts_outside_crop"]
    assert outside["count"] == 1 and outside["volume_ml"] == pytest.approx(4 * 5 * 20 * 20 / 1000, rel=0.2)
    assert f"about {outside['volume_ml']:.1f} mL" in " ".join(result.warnings)


def test_train_records_null_for_a_training_ct_whose_body_the_image_cuts(tmp_path):
    """train records each training CT's body; it measured them on the cached network grid, where the body crop and
    the padding to the size multiple (air, -1024 HU) moved the image's side away from a body it cuts: the cut went
    unseen and a part of the body was recorded (the abdomen-pelvis CT: 307.5 mm, null from its file)."""
    from LiverTumorSegLib.io import write_label_map, write_volume
    from LiverTumorSegLib.preprocessing import PreprocessingConfig, SlicePreprocessor
    from LiverTumorSegLib.training.datasets import Case
    from LiverTumorSegLib.training.slice_cache import build_slice_cache
    from LiverTumorSegLib.training.trainer import training_body_diameters

    cases = []
    for name, lr_mm, ap_mm in (("cut", 300.0, 200.0), ("whole", 160.0, 100.0)):
        hu, geometry = _ellipse_body(lr_mm, ap_mm, shape=(3, 256, 256))
        labels = np.zeros(hu.shape, np.uint8)
        labels[:, 110:150, 100:140] = 1
        image = write_volume(tmp_path / f"{name}.nii.gz", CTVolume(hu, geometry))
        label = write_label_map(tmp_path / f"{name}_label.nii.gz", labels, geometry)
        cases.append(Case(name, name, str(image), str(label), "csv"))
    config = PreprocessingConfig(channels=[{"kind": "window", "level": 40.0, "width": 400.0}], target_spacing_mm=3.0,
                                 size_multiple=32, crop_to_body=True)
    for _ in range(2):  # cached, then read from the cache
        bodies = training_body_diameters(build_slice_cache(cases, SlicePreprocessor(config), tmp_path / "cache"))
        assert bodies["cut"] is None and bodies["whole"] == pytest.approx(np.sqrt(160.0 * 100.0), abs=3.0)


def test_the_sizes_quoted_for_the_bundled_default_follow_from_what_it_records():
    """--help, docs/cli.md and the module's docstrings quote the bundled default's thresholds in mm; they were
    worked out from 305 or 315 mm, while the package recorded 341.8 and 324.7 mm (v3; v10 records 341.3 and 324.6 mm;
    the third CT's body is cut)."""
    import argparse
    import re
    from pathlib import Path

    from LiverTumorSegLib.inference import body_size
    from LiverTumorSegLib.inference.options import add_segmentation_arguments
    from LiverTumorSegLib.package import read_package_metadata, resolve_model

    smallest = training_body_diameter_mm(read_package_metadata(resolve_model("default")))
    threshold, target = body_size.SMALL_FRACTION * smallest, body_size.TARGET_FRACTION * smallest
    parser = argparse.ArgumentParser()
    add_segmentation_arguments(parser)
    texts = {"--help": " ".join(parser.format_help().split()),
             "docs/cli.md": (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")}
    for where, text in texts.items():
        quoted = [float(n) for n in re.findall(r"(\d+) mm across for the bundled", text)]
        assert quoted and all(abs(n - threshold) < 1.0 for n in quoted), (where, quoted, threshold)
    source = Path(body_size.__file__).read_text(encoding="utf-8")
    assert f"smallest {smallest:.0f} mm" in source and f"bodies under {threshold:.0f} mm" in source
    assert f"bundled default: {target:.0f} mm" in source
    assert f"bodies under {target / body_size.MAX_IN_PLANE_SCALE:.0f} mm" in source


def test_the_package_s_settings_hash_tells_apart_a_package_that_records_its_training_bodies():
    """A resumed batch refuses results of a package with the same weights but other settings (the report's
    model_settings_sha256). The smallest training body decides which CTs are enlarged, so a package given its
    record afterwards (scripts/record_training_body_size.py) segments a child's CT otherwise: it must not hash
    the same; a package without the record hashes as before."""
    import hashlib
    import json

    from LiverTumorSegLib.package import network_settings_sha256

    settings = {"architecture": {"name": "unet"}, "preprocessing": {"target_spacing_mm": 1.5}}
    before = hashlib.sha256(json.dumps(settings, sort_keys=True).encode("utf-8")).hexdigest()
    assert network_settings_sha256(dict(settings, name="any")) == before
    recorded = dict(settings, **{PACKAGE_KEY: {"a": 341.8, "b": 324.7, "c": None}})
    assert network_settings_sha256(recorded) != before
    other_larger = dict(settings, **{PACKAGE_KEY: {"a": 350.0, "b": 324.7}})  # the same smallest body
    assert network_settings_sha256(other_larger) == network_settings_sha256(recorded)
    smaller = dict(settings, **{PACKAGE_KEY: {"a": 341.8, "b": 300.0}})
    assert network_settings_sha256(smaller) != network_settings_sha256(recorded)


def test_the_diameter_does_not_depend_on_how_the_ct_is_stored():
    """Every second pixel is read; where an arm touches the trunk across a one-pixel gap, which pixels were read
    decided whether the arm counted: the 20-slice CT shrunk to 0.6x measured 194.8 mm stored as scanned and 190.7 mm
    stored with y and z reversed (enlarged 1.50x and 1.53x). The pixels read are now the same ones in the patient."""
    hu, geometry = _ellipse_body(120.0, 100.0, shape=(2, 200, 200))  # the trunk: columns 40-159
    hu = hu.copy()
    hu[:, 90:110, 150:169] = 40  # tissue from the trunk to a one-pixel gap (column 169), then an arm
    hu[:, 90:110, 170:195] = 40
    flipped = ImageGeometry(spacing=geometry.spacing, direction=(-1, 0, 0, 0, 1, 0, 0, 0, 1))
    as_scanned = body_diameter_mm(hu, geometry)["diameter_mm"]
    assert body_diameter_mm(np.ascontiguousarray(hu[:, :, ::-1]), flipped)["diameter_mm"] == as_scanned
    transposed = ImageGeometry(spacing=(5.0, 1.0, 1.0), direction=(0, 0, 1, 0, 1, 0, 1, 0, 0))  # (x, y, z) stored
    assert body_diameter_mm(np.ascontiguousarray(hu.transpose(2, 1, 0)), transposed)["diameter_mm"] == as_scanned


def test_the_record_script_records_the_training_cases_only_not_the_validation_cases(tmp_path, capsys):
    """training.data_files lists the validation CTs too (train writes both); only the CTs the network was trained
    on (training.cases) set the size the network learned."""
    pytest.importorskip("torch")
    from inference_helpers import tiny_unet_package
    from script_helpers import load_script

    from LiverTumorSegLib.io import write_volume
    from LiverTumorSegLib.package import read_package_metadata, rewrite_package_metadata

    adult = write_volume(tmp_path / "adult.nii.gz", CTVolume(*_ellipse_body(220.0, 160.0, shape=(2, 256, 256))))
    child = write_volume(tmp_path / "child.nii.gz", CTVolume(*_ellipse_body(120.0, 90.0, shape=(2, 256, 256))))
    package = tiny_unet_package(tmp_path).path
    files = [{"case": "trained", "image": str(adult)}, {"case": "validation", "image": str(child)}]
    rewrite_package_metadata(package, lambda meta: meta.setdefault("training", {}).update(data_files=files,
                                                                                          cases=["trained"]))
    script = load_script("scripts/record_training_body_size.py", "record_training_body_size")
    assert script.main([str(package)]) == 0
    assert list(read_package_metadata(package)[PACKAGE_KEY]) == ["trained"]


def test_an_engine_given_without_a_package_is_not_scaled_by_the_default_model_s_record():
    """Segmenter(engine=...) runs the engine's model; an engine that names no package ("anything with predict")
    got the training bodies of options.model (the bundled default's) and its CTs were enlarged by them."""
    from LiverTumorSegLib.inference import SegmentationOptions
    from LiverTumorSegLib.inference.segmenter import Segmenter

    class NamelessEngine:
        def predict(self, volume, progress=None, cancel=None):
            return (np.asarray(volume.array) > 0).astype(np.uint8)

    hu, geometry = _ellipse_body(160.0, 100.0, shape=(2, 200, 200))
    result = Segmenter(SegmentationOptions(), engine=NamelessEngine()).segment_volume(CTVolume(hu, geometry),
                                                                                    checked=True)
    assert result.report["body_size"]["training_diameter_mm"] is None
    assert result.report["body_size"]["in_plane_scale"] == 1.0


def test_the_cut_edge_shares_quoted_for_the_threshold_are_what_the_code_measures(monkeypatch):
    """MAX_CUT_EDGE_FRACTION's docstring quotes the share of the body's edge on the image's edge or beside padding of
    the CTs it was set on; it said 1.3 % for the 3-slice GE CT, which measures 1.2-1.6 % over its three slices."""
    import re
    from pathlib import Path

    from LiverTumorSegLib.inference import body_size
    from LiverTumorSegLib.io import read_volume

    data = Path(__file__).resolve().parents[2] / "Testing" / "Data"
    measured = []
    original = body_size._cut_edge_fraction
    monkeypatch.setattr(body_size, "_cut_edge_fraction", lambda part, plane: measured.append(
        original(part, plane)) or measured[-1])
    doc = " ".join(_constant_doc("MAX_CUT_EDGE_FRACTION").split())
    ct = read_volume(data / "ct3slice_ct.nii.gz")
    body_diameter_mm(ct.array, ct.geometry)
    low, high = (float(v) for v in re.search(r"grazes its body along ([\d.]+)-([\d.]+) %", doc).groups())
    assert low == pytest.approx(100 * min(measured), abs=0.05) and high == pytest.approx(100 * max(measured), abs=0.05)
    measured.clear()
    ct = read_volume(data / "example_ct_sm.nii.gz")
    body_diameter_mm(ct.array, ct.geometry)
    sample = float(re.search(r"\(``example_ct_sm``\) along ([\d.]+) %", doc).group(1))
    assert sample == pytest.approx(100 * max(measured), abs=0.05) and max(measured) < body_size.MAX_CUT_EDGE_FRACTION


def _constant_doc(name):
    """The docstring written under the module constant ``name`` of body_size.py."""
    import ast
    from pathlib import Path

    from LiverTumorSegLib.inference import body_size

    tree = ast.parse(Path(body_size.__file__).read_text(encoding="utf-8"))
    for node, following in zip(tree.body, tree.body[1:]):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return following.value.value
    raise AssertionError(f"no docstring under {name}")


def _disc_body_on_a_table(bridge=True, seed=0):
    """A 150 mm water-density disc body (40 HU) in noisy air (-1000 +- 20 HU) above a CT table: a slab 240 mm wide
    and 4 mm thick (200 HU) 6 mm below the body, joined to it (``bridge``) by a 4 mm wide strip of mattress cover
    (-100 HU). ``(z, y, x)`` on a 1 mm LPS identity grid, y (rows) running to the back, the table at the back."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:256, 0:256]
    plane = rng.normal(-1000.0, 20.0, (256, 256))
    plane[(yy - 120.0) ** 2 + (xx - 128.0) ** 2 <= 75.0 ** 2] = 40.0  # the body's lowest row: 195
    plane[201:205, 8:248] = 200.0  # the table
    if bridge:
        plane[195:201, 126:130] = -100.0
    return np.repeat(plane[None].astype(np.int16), 3, axis=0), ImageGeometry(spacing=(1.0, 1.0, 5.0))


def test_a_table_joined_to_the_body_by_a_thin_strip_is_not_body():
    """The table and a mattress cover touching the body were counted as body: the table's 960 mm^2 made this
    150 mm disc measure 154.2 mm (a child lying on a table measured larger, and maybe not enlarged)."""
    hu, geometry = _disc_body_on_a_table(bridge=False)
    alone = body_diameter_mm(hu, geometry)["diameter_mm"]
    assert alone == pytest.approx(150.0, abs=1.5)
    hu, geometry = _disc_body_on_a_table(bridge=True)
    assert body_diameter_mm(hu, geometry)["diameter_mm"] == pytest.approx(alone, abs=0.5)


def test_a_thin_wall_around_the_lungs_keeps_the_air_it_holds():
    """The opening that parts a table removes a wall thinner than its disc; the air the body encloses (lungs, a thin
    child's chest wall around them) must still count as body."""
    hu, geometry = _ellipse_body(160.0, 120.0, shape=(2, 256, 256))
    hu = hu.copy()
    yy, xx = np.mgrid[0:256, 0:256]
    outer = ((xx - 127.5) / 77.0) ** 2 + ((yy - 127.5) / 57.0) ** 2 <= 1  # 3 mm in from the skin
    hu[:, outer & (np.abs(xx - 127.5) > 25)] = -850  # two lungs beside a 50 mm mediastinum
    assert body_diameter_mm(hu, geometry)["diameter_mm"] == pytest.approx(np.sqrt(160.0 * 120.0), abs=3.0)


def _noisy_air(hu, seed=0):
    """``hu`` with its air (-1000) given scanner noise (20 HU), clipped at -1024 as many scanners store it."""
    rng = np.random.default_rng(seed)
    hu = hu.astype(np.int16)
    air = hu == -1000
    hu[air] = np.maximum(np.round(rng.normal(-1000.0, 20.0, int(air.sum()))), -1024).astype(np.int16)
    return hu


def test_a_round_field_of_view_padded_with_the_value_of_air_cuts_the_body():
    """Padding written as -1024 (air's value) could not be told from air: a 200 x 150 mm body cut by a 180 mm round
    field of view measured 168.0 mm, as if whole (an adult so cut could be measured small and enlarged)."""
    hu, geometry = _ellipse_body(200.0, 150.0, padding_radius_px=90)
    hu = _noisy_air(np.where(hu == -3024, -1000, hu))
    hu[:, _outside_circle(hu.shape[1:], 90)] = -1024
    record = body_diameter_mm(hu, geometry)
    assert record["diameter_mm"] is None and record["slices_cut"] == 6
    hu, geometry = _ellipse_body(160.0, 100.0, padding_radius_px=120)  # the field of view around the body: measured
    hu = _noisy_air(np.where(hu == -3024, -1000, hu))
    hu[:, _outside_circle(hu.shape[1:], 120)] = -1024
    assert body_diameter_mm(hu, geometry)["diameter_mm"] == pytest.approx(126.5, abs=3.0)


def test_air_set_to_one_value_around_a_round_body_is_not_a_field_of_view():
    """A CT whose air was set to -1024 has one value all around the body: the body is not cut, even a round one
    (the border of that air is a circle, but there is no air inside it)."""
    for lr_mm, ap_mm in ((160.0, 100.0), (150.0, 150.0)):
        hu, geometry = _ellipse_body(lr_mm, ap_mm)
        hu = np.where(hu == -1000, -1024, hu)
        assert body_diameter_mm(hu, geometry)["diameter_mm"] == pytest.approx(np.sqrt(lr_mm * ap_mm), abs=3.0)


def test_a_resampling_s_fill_of_air_beyond_a_straight_line_cuts_the_body():
    """A CT resampled onto a turned grid with a fill of -1024 (air's value; no fill the resampling-fill check looks
    for) has air beyond a straight line that cuts the body: read as the body's edge, the real 20-slice CT so turned
    measured 184 mm and was enlarged x1.59 for the network (7 false lesions instead of 1). The fill cuts the body;
    the same body in noisy air, or in air set to -1024 all around it, is measured."""
    hu, geometry = _ellipse_body(200.0, 150.0)
    hu = _noisy_air(hu)
    rows, columns = np.mgrid[0:hu.shape[1], 0:hu.shape[2]]
    for slope in (0.0, 0.3):  # a grid turned about the left-right axis; and also in-plane
        filled = hu.copy()
        filled[:, rows > 150 + slope * (columns - 128)] = -1024
        record = body_diameter_mm(filled, geometry)
        assert record["diameter_mm"] is None and record["slices_cut"] == 6
    assert body_diameter_mm(hu, geometry)["diameter_mm"] == pytest.approx(np.sqrt(200.0 * 150.0), abs=3.0)


def _outside_circle(shape_yx, radius_px):
    """The pixels of a ``shape_yx`` plane outside a circle of ``radius_px`` about its centre."""
    yy, xx = np.mgrid[0:shape_yx[0], 0:shape_yx[1]]
    return (yy - (shape_yx[0] - 1) / 2) ** 2 + (xx - (shape_yx[1] - 1) / 2) ** 2 > radius_px ** 2


def test_preprocess_model_shows_a_small_body_at_its_own_size_and_its_help_says_so(tmp_path, capsys):
    """``preprocess --model`` said it shows the package's preprocessing 'as segment applies it', but it does not apply
    the body-size scaling: a 120 mm body, which segment gives the bundled model enlarged (about 2.4x), is previewed on
    the package's own 1.5 mm network pixels. Its help now says so (as README and docs/cli.md do)."""
    import re

    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.io import write_volume
    from LiverTumorSegLib.package import read_package_metadata, resolve_model

    hu, geometry = _ellipse_body(120.0, 120.0, shape=(3, 160, 160))
    training = training_body_diameter_mm(read_package_metadata(resolve_model("default")))
    assert body_size_record(CTVolume(hu, geometry), training)["in_plane_scale"] > 2.0  # segment would enlarge it
    write_volume(tmp_path / "small.nii.gz", CTVolume(hu, geometry))
    assert main(["preprocess", str(tmp_path / "small.nii.gz"), "--model", "default", "--slices", "1",
                 "-o", str(tmp_path / "p.png")]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["preprocess", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    model_help = text[text.index("--model MODEL "):text.index("--slices SLICES ")]
    assert re.search(r"child-sized body, which segment gives the network enlarged in-plane \(a package that "
                     r"resamples to a pixel spacing\), is shown at its own size", model_help)


def test_a_failing_body_size_check_gives_the_ct_as_it_is_with_a_warning_not_an_error(monkeypatch):
    import LiverTumorSegLib.inference.body_size as body_size

    def broken(hu_zyx, geometry, outside_scan_zyx=None):
        raise IndexError("index 3 is out of bounds")

    monkeypatch.setattr(body_size, "body_diameter_mm", broken)
    hu, geometry = _ellipse_body(160.0, 100.0, shape=(4, 200, 200))
    volume = CTVolume(hu, geometry)
    _, engine, result = _segment(volume, {PACKAGE_KEY: {"adult": 315.0}})  # the IndexError ended segment
    record = result.report["body_size"]
    assert engine.given[0] is volume and record["in_plane_scale"] == 1.0 and record["diameter_mm"] is None
    assert record["error"] == "IndexError: index 3 is out of bounds" and record["training_diameter_mm"] == 315.0
    warning, = [w for w in result.warnings if w.startswith("The body size check failed")]
    assert "index 3 is out of bounds" in warning and "given to the network as it is" in warning


def _straight_air_fill_on_whole_planes(plane, pixel_spacing_mm):
    """straight_air_fill as it was before it worked on each part's box: every part on the whole plane (and, where
    the line fitted to all of a part's border misses, the robust line and a field of view's circle on it)."""
    from scipy import ndimage

    from LiverTumorSegLib.inference.body_size import (BODY_HU, MAX_FILL_LINE_DISTANCE_PIXELS,
                                                      MIN_FOV_BORDER_PIXELS, _fill_beyond_robust_line,
                                                      _with_face_neighbours)

    found = np.zeros(plane.shape, dtype=bool)
    lowest = plane.min()
    if lowest >= BODY_HU:
        return found
    parts, _ = ndimage.label(plane == lowest)
    at_edge = np.unique(np.concatenate([parts[0], parts[-1], parts[:, 0], parts[:, -1]]))
    for label in at_edge[at_edge > 0]:
        region = parts == label
        border = region & _with_face_neighbours(~region)
        border[0], border[-1], border[:, 0], border[:, -1] = False, False, False, False
        if border.sum() < MIN_FOV_BORDER_PIXELS:
            continue
        rows, columns = np.nonzero(border)
        points = np.stack([rows * float(pixel_spacing_mm[0]), columns * float(pixel_spacing_mm[1])], axis=1)
        centred = points - points.mean(axis=0)
        normal = np.linalg.svd(centred, full_matrices=False)[2][1]
        if np.median(np.abs(centred @ normal)) <= MAX_FILL_LINE_DISTANCE_PIXELS * max(pixel_spacing_mm):
            found |= region
            continue
        beyond = _fill_beyond_robust_line(plane, region, border, points, pixel_spacing_mm)  # the line fit missed
        if beyond is not None:
            found |= beyond
    return found


@pytest.mark.parametrize("seed", range(6))
def test_straight_air_fill_on_each_part_s_box_finds_what_the_whole_plane_found(seed):
    """Fills beyond slanted lines on one or two sides, a corner wedge, specks of the lowest value at the edges and a
    noisy body: the parts found (and not found) are those of the whole-plane search, pixel for pixel."""
    from LiverTumorSegLib.inference.body_size import straight_air_fill

    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(60, 120)), int(rng.integers(60, 120)))
    rows, columns = np.mgrid[:shape[0], :shape[1]]
    plane = rng.integers(-900, 60, shape).astype(np.int16)
    plane[(rows - shape[0] / 2) ** 2 + (columns - shape[1] / 2) ** 2 < (min(shape) / 3) ** 2] = 40
    plane[rows + rng.uniform(0.1, 0.9) * columns > rng.uniform(0.9, 1.3) * shape[0]] = -1024  # a straight fill
    if seed % 2:
        plane[columns < rng.uniform(3, 12) - 0.3 * rows] = -1024  # a wedge at the first columns
    if seed % 3 == 0:
        plane[:, :4] = -1024  # a strip along one whole side
    specks = rng.integers(0, shape[0], 12), rng.integers(0, shape[1], 12)
    plane[specks[0], 0] = -1024
    plane[0, specks[1]] = -1024
    for spacing in ((1.4, 1.4), (0.8, 1.6)):
        expected = _straight_air_fill_on_whole_planes(plane, spacing)
        np.testing.assert_array_equal(straight_air_fill(plane, spacing), expected)
    if seed % 2 == 0:  # without the wedge (which bends the fill's border) the fill is found: the test holds one
        assert _straight_air_fill_on_whole_planes(plane, (1.4, 1.4)).any()


def _round_fov_body_with_air_fill(fill_from_row, slope):
    """A 200 x 150 mm body in noisy air clipped at -1024, a round field of view of 120 pixels padded with -1024 (the
    value of air), and -1024 beyond the line ``row = fill_from_row + slope x (column - 128)``: a resampling's fill
    written with air's value added to a CT whose padding is air's value too, the two merged into one region."""
    hu, geometry = _ellipse_body(200.0, 150.0)
    hu = _noisy_air(hu)
    hu[:, _outside_circle(hu.shape[1:], 120)] = -1024
    rows, columns = np.mgrid[0:hu.shape[1], 0:hu.shape[2]]
    hu[:, rows > fill_from_row + slope * (columns - 128)] = -1024
    return hu, geometry


@pytest.mark.parametrize("fill_from_row, slope", [(180, 0.0), (185, 0.25), (170, -0.2), (200, 0.0)])
def test_an_air_fill_merged_with_a_round_field_of_view_padded_with_air_cuts_the_body(fill_from_row, slope):
    """The fill's region, merged with the field of view's padding, bordered the rest along a line and arcs of the
    circle, neither a line nor a circle: the 20-slice CT with rows beyond a slanted line set to -1024 measured 285 mm
    across with no slice cut (324.6 mm as scanned), and this 173 mm body 158.0-173.0 mm, uncut."""
    from LiverTumorSegLib.inference.body_size import straight_air_fill

    hu, geometry = _round_fov_body_with_air_fill(fill_from_row, slope)
    record = body_diameter_mm(hu, geometry)
    assert record["diameter_mm"] is None and record["slices_cut"] == 6
    rows, columns = np.mgrid[0:hu.shape[1], 0:hu.shape[2]]
    beyond = rows > fill_from_row + 1 + slope * (columns - 128)  # a pixel's margin for the line's tolerance
    found = straight_air_fill(hu[0], (1.0, 1.0))
    assert found[beyond].all() and not found[rows < fill_from_row - 2 + slope * (columns - 128)].any()


def test_air_set_to_one_value_around_a_body_with_a_flat_back_inside_a_round_field_of_view_is_not_a_fill():
    """The rule that reads a line beside a circle as a fill beside a field of view wants air inside the circle: a
    body lying with a flat back in air a CT has had set to -1024 (one region with the field of view's padding) is
    measured, and no pixel of it is read as a fill."""
    from LiverTumorSegLib.inference.body_size import straight_air_fill

    hu, geometry = _ellipse_body(200.0, 150.0)
    hu = np.where(hu == -1000, -1024, hu).astype(np.int16)
    hu[:, 180:, :] = np.where(hu[:, 180:, :] > -500, -1024, hu[:, 180:, :])  # its back cut flat at row 180
    hu[:, _outside_circle(hu.shape[1:], 120)] = -1024
    assert body_diameter_mm(hu, geometry)["slices_cut"] == 0
    assert not straight_air_fill(hu[0], (1.0, 1.0)).any()



def _u_shaped_table(object_side_mm=None):
    """(z, y, x) HU on 1 mm pixels: a 6 mm thick U-shaped table (a 240 mm base, 60 mm rails; 2160 mm^2, above the
    smallest body area) in air, optionally with a square object of water density ``object_side_mm`` on its base."""
    plane = np.full((256, 256), -1000, np.int16)
    plane[200:206, 8:248] = 100
    plane[140:200, 8:14] = 100
    plane[140:200, 242:248] = 100
    if object_side_mm is not None:
        plane[200 - object_side_mm:200, 118:118 + object_side_mm] = 40
    return np.repeat(plane[None], 4, axis=0), ImageGeometry(spacing=(1.0, 1.0, 5.0))


@pytest.mark.parametrize("object_side_mm", [None, 30])
def test_a_table_alone_or_with_an_object_smaller_than_a_body_gives_no_diameter(object_side_mm):
    """Everything of the table is thinner than the opening's disc: nothing is left, so no body (not the table's
    52 mm area-equivalent diameter); a 30 mm object on it (900 mm^2) is left but is no body (under 2000 mm^2).
    Either way the CT is given to the network as it is (no diameter, no scale)."""
    hu, geometry = _u_shaped_table(object_side_mm)
    record = body_diameter_mm(hu, geometry)
    assert record == {"diameter_mm": None, "slices_measured": 0, "slices_cut": 0}
    assert in_plane_scale(record["diameter_mm"], 315.0) == 1.0
