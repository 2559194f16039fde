"""Segmenter: loads a package once and segments many volumes exactly like the one-call wrappers; an engine
passed in wins over the options and the report says what ran; progress stages; liver-volume plausibility."""
import json
import logging

import numpy as np
import pytest

pytest.importorskip("torch")

from LiverTumorSegLib import package as package_module  # noqa: E402
from LiverTumorSegLib.errors import CancelledError, InputError  # noqa: E402
from LiverTumorSegLib.inference import SegmentationOptions, Segmenter, segment_file, segment_volume  # noqa: E402
from LiverTumorSegLib.inference.engine import SliceInferenceEngine  # noqa: E402
from LiverTumorSegLib.inference.postprocess import PostprocessingOptions  # noqa: E402
from LiverTumorSegLib.inference.segmenter import PLAUSIBLE_LIVER_ML, liver_volume_warnings  # noqa: E402
from LiverTumorSegLib.io import write_volume  # noqa: E402
from LiverTumorSegLib.phantom import make_phantom  # noqa: E402
from LiverTumorSegLib.progress import CancellationToken  # noqa: E402

from inference_helpers import corner_phantom, oracle_package, oracle_predictor, tiny_unet_package  # noqa: E402


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return tiny_unet_package(tmp_path_factory.mktemp("pkg")).path


def two_volumes():
    a = corner_phantom().ct
    b = make_phantom((10, 36, 40), (2.5, 2.5, 5.0), noise_hu=4.0, seed=3).ct
    return a, b


def without_timing(report):
    """The report without run-time measurements (seconds, per-stage timings, the model load's parts, the bf16
    check's numbers and its warning, which only the first volume of an engine runs); the precision that ran is
    kept."""
    out = {k: v for k, v in report.items() if k not in ("seconds", "timings_s", "model_load_s", "precision")}
    out["precision_used"] = report.get("precision", {}).get("used")
    out["warnings"] = [w for w in report.get("warnings", []) if not w.startswith("bf16 labels differ from fp32")]
    return out


def test_a_failed_bf16_check_is_warned_of_in_the_report_of_the_volume_it_ran_on_only(tiny_path, monkeypatch):
    """The check's warning (auto fell back to fp32) went into every later volume's report with the first volume's
    numbers; it is that volume's warning, and later ones record the check with this_volume false."""
    from LiverTumorSegLib.inference import engine as engine_module

    monkeypatch.setattr(engine_module, "cpu_has_native_bf16", lambda: True)  # the check runs on any CPU ...
    monkeypatch.setattr(engine_module, "_label_disagreement", lambda full, reduced: (7, 0.0123))  # ... and fails
    segmenter = Segmenter(SegmentationOptions(model=str(tiny_path), device="cpu", threads=1, batch_size=4))
    reports = [segmenter.segment_volume(v).report for v in two_volumes()]
    checks = [r["precision"].get("check") for r in reports]
    assert checks[0]["passed"] is False and checks[0]["this_volume"] is True
    said = [[w for w in r["warnings"] if w.startswith("bf16 labels differ from fp32")] for r in reports]
    assert len(said[0]) == 1 and f"{100 * checks[0]['differing_fraction']:.3f} %" in said[0][0]
    assert said[1] == [] and checks[1]["this_volume"] is False and reports[1]["precision"]["used"] == "fp32"


def test_loads_once_and_matches_the_wrapper(tiny_path, monkeypatch):
    calls = []
    real = package_module.load_model_package

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(package_module, "load_model_package", counting)
    options = SegmentationOptions(model=str(tiny_path), device="cpu", threads=1, batch_size=4)
    segmenter = Segmenter(options)
    assert not segmenter.loaded and calls == []  # nothing loaded until needed
    results = [segmenter.segment_volume(v) for v in two_volumes()]
    assert len(calls) == 1 and segmenter.loaded
    for volume, result in zip(two_volumes(), results):
        expected = segment_volume(volume, str(tiny_path), device="cpu", threads=1, batch_size=4)
        np.testing.assert_array_equal(result.labels, expected.labels)
        assert without_timing(result.report) == without_timing(expected.report)
        assert result.labels.shape == volume.shape_zyx
    assert len(calls) == 3  # the wrapper loads on every call: the reason the Segmenter exists


def test_segment_file_many_times_with_one_engine(tiny_path, tmp_path):
    segmenter = Segmenter(SegmentationOptions(model=str(tiny_path), device="cpu", threads=1)).load()
    engine = segmenter.engine
    for n, volume in enumerate(two_volumes()):
        ct = write_volume(tmp_path / f"ct{n}.nii.gz", volume)
        result = segmenter.segment_file(ct, tmp_path / f"seg{n}.nii.gz", report_path=tmp_path / f"r{n}.json",
                                        probability_path=tmp_path / f"p{n}.nii.gz")
        assert result.tumor_probability is not None and (tmp_path / f"p{n}.nii.gz").exists()
        assert json.loads((tmp_path / f"r{n}.json").read_text())["options"]["device"] == "cpu"
    assert segmenter.engine is engine and not segmenter.options.probabilities  # unchanged by the calls


def test_an_input_named_nifti_nrrd_or_metaimage_is_not_sniffed_for_dicom(tiny_path, tmp_path, monkeypatch):
    """segment checked whether the input file is DICOM (so that no output replaces a slice of its series) with
    pydicom's forced read, which walked a whole uncompressed NIfTI: 4-12 s on one with zero slices. A file named
    .nii/.nii.gz/.nrrd/.nhdr/.mha/.mhd is read as that format, so it is not opened for DICOM; a file without an
    extension still is (a DICOM slice named IM000016)."""
    from LiverTumorSegLib import fileutil
    from LiverTumorSegLib.inference.segmenter import _check_outputs

    sniffed = []

    def no_sniffing(path):
        sniffed.append(str(path))
        raise AssertionError(f"{path} was sniffed for DICOM")

    volume = two_volumes()[0]
    ct = write_volume(tmp_path / "ct.nii.gz", volume)
    monkeypatch.setattr(fileutil, "is_dicom_file", no_sniffing)
    Segmenter(SegmentationOptions(model=str(tiny_path), device="cpu", threads=1)).segment_file(
        ct, tmp_path / "seg.nii.gz")
    assert (tmp_path / "seg.nii.gz").exists()
    for name in ("ct.nii", "ct.nrrd", "ct.NHDR", "ct.mha", "ct.mhd"):
        (tmp_path / name).write_bytes(b"\0" * 1024)
        _check_outputs(tmp_path / name, tmp_path / "out.nii.gz", None, None, None, overwrite=True)
    series = tmp_path / "series"  # an existing output inside the input's DICOM folder, replaced with --overwrite:
    series.mkdir()                # its name says what it is too (3.4 s for a 26 MB label map)
    (series / "seg.nii").write_bytes(b"\0" * 1024)
    with pytest.raises(InputError, match="would be written into the input DICOM series' folder"):  # a NIfTI there
        _check_outputs(series, series / "seg.nii", None, None, None, overwrite=True)          # is refused anyway
    assert sniffed == []
    (tmp_path / "IM000016").write_bytes(b"\0" * 1024)
    with pytest.raises(AssertionError, match="IM000016 was sniffed"):
        _check_outputs(tmp_path / "IM000016", tmp_path / "out.nii.gz", None, None, None, overwrite=True)


def test_probability_is_exact_everywhere_only_when_it_is_an_output(tiny_path, tmp_path, monkeypatch):
    # segment reads the tumor probability inside the labels only (lesion confidence, the lesion report), so
    # the engine may leave all-background slices at 0; a probability map that is written must be exact
    seen = []
    real = SliceInferenceEngine.predict_with_probability

    def recording(self, volume, *args, **kwargs):
        seen.append(kwargs.get("probability_everywhere", True))
        return real(self, volume, *args, **kwargs)

    monkeypatch.setattr(SliceInferenceEngine, "predict_with_probability", recording)
    volume = two_volumes()[0]
    plain = Segmenter(SegmentationOptions(model=str(tiny_path), device="cpu", threads=1)).load()
    plain.segment_volume(volume)
    Segmenter(SegmentationOptions(model=str(tiny_path), device="cpu", threads=1, probabilities=True)
              ).load().segment_volume(volume)
    ct = write_volume(tmp_path / "ct.nii.gz", volume)
    plain.segment_file(ct, tmp_path / "seg.nii.gz", probability_path=tmp_path / "p.nii.gz")
    assert seen == [False, True, True]


def test_given_engine_wins_and_the_report_says_what_ran(caplog):
    engine = SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=4,
                                  batch_predictor=oracle_predictor)
    volume = corner_phantom().ct
    with caplog.at_level(logging.WARNING):
        result = segment_volume(volume, None, engine=engine, tta_flip=True, backend="onnx",
                                postprocessing=PostprocessingOptions(min_lesion_ml=0))
    assert "ignoring tta=True" in caplog.text and "ignoring backend='onnx'" in caplog.text
    report = result.report
    assert report["tta_flip"] is False and report["backend"] == "torch" and report["device"].startswith("cpu")
    assert report["options"]["tta"] is False and report["options"]["backend"] == "torch"
    assert report["options"]["batch_size"] == 4 and report["options"]["threads"] == 1
    assert report["lesion_count"] == 1
    with pytest.raises(InputError, match="window"):
        Segmenter(SegmentationOptions(window_level=40.0, window_width=400.0), engine=engine)
    # precision, threads and batch size asked for were replaced without a word (the inference options audit)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        result = segment_volume(volume, None, engine=engine, precision="fp32", threads=2, batch_size=2)
    assert "ignoring precision='fp32'" in caplog.text and "ignoring threads=2" in caplog.text
    assert "ignoring batch_size=2" in caplog.text
    assert result.report["options"]["batch_size"] == 4 and result.report["options"]["threads"] == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        segment_volume(volume, None, engine=engine, threads=1, batch_size=4)     # as the engine runs: no word
    assert "ignoring" not in caplog.text


def test_window_override_reaches_the_engine(tiny_path):
    segmenter = Segmenter(SegmentationOptions(model=str(tiny_path), device="cpu", threads=1, window_level=55.0,
                                              window_width=300.0)).load()
    channel = segmenter.engine.preprocessing.to_dict()["channels"][0]
    assert (channel["level"], channel["width"]) == (55.0, 300.0)
    plain = Segmenter(SegmentationOptions(model=str(tiny_path), device="cpu", threads=1)).load()
    assert plain.engine.preprocessing.to_dict()["channels"][0]["level"] == 40.0


def test_segment_volume_progress_ends_in_one_done(tiny_path):
    """Issue 14: the README snippet showed 90 % "done", then 90 % "post-processing", then 100 % "done"."""
    seen = []
    segmenter = Segmenter(SegmentationOptions(model=str(tiny_path), device="cpu", threads=1))
    result = segmenter.segment_volume(corner_phantom().ct, progress=lambda f, s: seen.append((f, s)))
    # the report records the batch size the engine chose (the options said "from memory")
    assert segmenter.options.batch_size is None and segmenter.engine.batch_size is not None
    assert result.report["options"]["batch_size"] == segmenter.engine.batch_size
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert [f for f, s in seen if s == "done"] == [1.0]
    order = ["loading model", "preprocessing", "network", "post-processing", "lesion report", "done"]
    stages = [s for _, s in seen]
    assert set(stages) == set(order)
    assert [order.index(s) for s in stages] == sorted(order.index(s) for s in stages)


def test_cancel_stops_before_post_processing():
    token = CancellationToken()

    def cancelling(x):
        token.cancel()
        return oracle_predictor(x)

    engine = SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=2, batch_predictor=cancelling)
    with pytest.raises(CancelledError):
        Segmenter(engine=engine).segment_volume(corner_phantom().ct, cancel=token)


@pytest.mark.parametrize("liver_ml,warned", [(0.0, True), (299.0, True), (300.0, False), (1500.0, False),
                                             (5000.0, False), (9720.0, True)])
def test_liver_volume_plausibility(liver_ml, warned):
    assert PLAUSIBLE_LIVER_ML == (300.0, 5000.0)
    messages = liver_volume_warnings(liver_ml)
    assert bool(messages) == warned
    if warned:
        assert "check it" in messages[0] and ("leaked" in messages[0] or "missed" in messages[0])


def test_a_small_whole_liver_is_explained_by_a_child_or_a_resection_too():
    """A CT at 0.6 of an adult's size (a child's) whose 1123 mL liver became 226 mL, outlined with Dice 0.94, was
    told only that the scan covers part of the liver or the segmentation missed most of it. A liver under 300 mL
    now names a small child (Urata's standard liver volume, about 320 mL at one year) and a resection too; no
    liver at all does not."""
    small, = liver_volume_warnings(226.0)
    assert small.startswith("Implausible result: the liver volume is 226 mL")
    assert "unless the patient is a small child" in small and "320 mL at one year" in small
    assert "had part of the liver removed" in small
    none, = liver_volume_warnings(0.0)
    assert "no liver was found" in none and "child" not in none
    assert "child" not in liver_volume_warnings(9720.0)[0]


def test_a_liver_under_half_a_millilitre_is_not_called_0_ml():
    """A liver of 0.17 mL (a speck on a scan's last slice) read 'the liver volume is 0 mL', beside 'no liver was
    found' for none at all."""
    small, = liver_volume_warnings(0.17)
    assert small.startswith("Implausible result: the liver volume is 0.17 mL")
    cut, = liver_volume_warnings(0.4, cut_by_scan_end=True)
    assert "so the liver volume, 0.40 mL, is that of the part scanned" in cut
    assert "the liver volume is 226 mL" in liver_volume_warnings(226.0)[0]   # whole mL where they show it


@pytest.mark.parametrize("liver_ml,implausible", [(0.0, True), (71.0, False), (299.0, False), (1500.0, None),
                                                  (9720.0, True)])
def test_a_small_liver_the_scan_cuts_is_not_called_implausible(liver_ml, implausible):
    """A scan that starts or ends inside the liver holds only part of it: under 300 mL says nothing there (the
    3-slice CT of Testing/Data, 71 mL, was 'Implausible result'). No liver, or one over 5000 mL, still is."""
    messages = liver_volume_warnings(liver_ml, cut_by_scan_end=True)
    if implausible is None:  # a plausible volume: not implausible, but only the part scanned (a lower bound)
        assert messages == ["The scan starts or ends inside the liver (liver on its first or last slice), so the "
                            "liver volume, 1500 mL, is that of the part scanned: a lower bound for the whole liver's "
                            "volume."]
        assert liver_volume_warnings(liver_ml) == []
        return
    assert len(messages) == 1 and messages[0].startswith("Implausible result") == implausible
    if not implausible:
        assert f"{liver_ml:.0f} mL, is that of the part scanned" in messages[0] and "300 mL" in messages[0]
        assert liver_volume_warnings(liver_ml)[0].startswith("Implausible result")  # the same volume, not cut


def test_liver_cut_by_scan_end_reads_the_head_to_foot_axis_in_any_storage_order():
    from inference_helpers import ORIENTATIONS, reoriented

    from LiverTumorSegLib.inference.plausibility import liver_cut_by_scan_end

    phantom = make_phantom((12, 40, 44), (2.0, 2.5, 4.0), lesions=[], noise_hu=0.0)
    liver_z = np.nonzero((phantom.labels >= 1).any(axis=(1, 2)))[0]
    assert liver_z[0] > 0 and liver_z[-1] < 11  # the whole phantom liver lies inside the scan
    crops = [((0, 12), False), ((liver_z[0], 12), True), ((0, liver_z[-1] + 1), True),
             ((liver_z[0] + 1, liver_z[-1]), True), ((liver_z[0] - 1, liver_z[-1] + 2), False)]
    for (first, last), cut in crops:
        ct = phantom.ct
        cropped = type(ct)(np.ascontiguousarray(ct.array[first:last]), ct.geometry, source="cropped")
        labels = np.ascontiguousarray(phantom.labels[first:last])
        for name in ("LPS", "permuted", "sagittal-like"):
            stored, stored_labels = reoriented(cropped, labels, *ORIENTATIONS[name])
            assert liver_cut_by_scan_end(stored_labels, stored.geometry) == cut, (first, last, name)
    inside = np.zeros((5, 8, 8), dtype=np.uint8)
    inside[1:4, 0:3, 0:8] = 1  # touches the in-plane edges, not the first or last slice
    assert not liver_cut_by_scan_end(inside, phantom.ct.geometry)
    inside[4, 2, 2] = 2  # tumor is liver too (label >= 1)
    assert liver_cut_by_scan_end(inside, phantom.ct.geometry)


def test_liver_cut_by_image_side_reads_the_in_plane_axes_in_any_storage_order():
    """A field of view narrower than the body (an obese patient) cut 252 of a 1123 mL liver off and segment
    reported 871 mL as the liver volume without a word; liver on the outermost row or column of the slices now
    counts as cut, in any storage order, and liver on the first or last slice only does not."""
    from inference_helpers import ORIENTATIONS, reoriented

    from LiverTumorSegLib.inference.plausibility import liver_cut_by_image_side

    phantom = make_phantom((12, 40, 44), (2.0, 2.5, 4.0), lesions=[], noise_hu=0.0)
    liver_y = np.nonzero((phantom.labels >= 1).any(axis=(0, 2)))[0]
    liver_x = np.nonzero((phantom.labels >= 1).any(axis=(0, 1)))[0]
    assert liver_y[0] > 0 and liver_x[0] > 0 and liver_x[-1] < 43 and liver_y[-1] < 39
    crops = [((slice(None), slice(None)), False), ((slice(liver_y[0] + 1, None), slice(None)), True),
             ((slice(None), slice(0, liver_x[-1])), True), ((slice(None), slice(liver_x[0] - 1, None)), False)]
    for (rows, columns), cut in crops:
        ct = phantom.ct
        cropped = type(ct)(np.ascontiguousarray(ct.array[:, rows, columns]), ct.geometry, source="cropped")
        labels = np.ascontiguousarray(phantom.labels[:, rows, columns])
        for name in ("LPS", "permuted", "sagittal-like"):
            stored, stored_labels = reoriented(cropped, labels, *ORIENTATIONS[name])
            assert liver_cut_by_image_side(stored_labels, stored.geometry) == cut, (rows, columns, name)
    on_end_slices = np.zeros((5, 8, 8), dtype=np.uint8)
    on_end_slices[0:5, 2:6, 2:6] = 1
    assert not liver_cut_by_image_side(on_end_slices, phantom.ct.geometry)
    on_end_slices[2, 7, 3] = 2  # tumor is liver too
    assert liver_cut_by_image_side(on_end_slices, phantom.ct.geometry)


def test_a_liver_next_to_the_padding_of_a_round_field_of_view_is_cut_too():
    """A round reconstruction field of view (padding at -3024 HU outside it) cut 180 of a 1123 mL liver, away from
    the image's rows and columns: segment called 858 mL a lower bound only for the scan's end. Liver beside the
    padding in a slice now counts as cut; liver beside air (-1000 HU), or beside padding only on the next slice,
    does not."""
    from LiverTumorSegLib.inference.plausibility import FOV_PADDING_HU, liver_cut_by_image_side
    from LiverTumorSegLib.volume import ImageGeometry

    geometry = ImageGeometry(spacing=(1.0, 1.0, 2.0))
    yy, xx = np.mgrid[:40, :40]
    outside = np.hypot(yy - 19.5, xx - 19.5) > 18
    hu = np.where(outside, -3024, -1000).astype(np.int16)[None].repeat(6, axis=0)
    labels = np.zeros(hu.shape, np.uint8)
    labels[1:5, 15:25, 15:25] = 1
    assert not liver_cut_by_image_side(labels, geometry, hu)  # the liver lies in air, inside the field of view
    labels[1:5, 15:25, 15:38] = 2  # reaches x 37 at rows 15-24: outside the circle (radius 18 about 19.5)
    touching = labels >= 1
    assert (touching & outside[None]).any()
    labels[:, outside] = 0  # the scanner shows nothing there
    assert not liver_cut_by_image_side(labels, geometry)  # without the CT: not on an outermost row or column
    assert liver_cut_by_image_side(labels, geometry, hu)
    air = np.where(hu < FOV_PADDING_HU, -1000, hu).astype(np.int16)  # the same image padded with air
    assert not liver_cut_by_image_side(labels, geometry, air)
    above = hu.copy()
    above[1:5] = -1000  # padding only on slices 0 and 5, above and below the liver's slices
    assert not liver_cut_by_image_side(labels, geometry, above)


def test_a_liver_the_field_of_view_cuts_gets_a_lower_bound_note_or_the_part_scanned_one():
    big, = liver_volume_warnings(871.0, cut_by_image_side=True)
    assert big == ("The image's field of view cuts the liver (liver on the outermost row or column of its slices, or "
                   "next to the padding outside a round field of view), so the liver volume, 871 mL, is that of the "
                   "part scanned: a lower bound for the whole liver's volume.")
    small, = liver_volume_warnings(120.0, cut_by_image_side=True, cut_by_scan_end=True)
    assert small.startswith("The scan starts or ends inside the liver (liver on its first or last slice) and the "
                            "image's field of view cuts the liver")
    assert "check for a liver under 300 mL does not apply" in small
    assert liver_volume_warnings(6000.0, cut_by_image_side=True)[0].startswith("Implausible result")
    assert liver_volume_warnings(0.0, cut_by_image_side=True)[0].startswith("Implausible result: no liver")


def test_segmenting_a_ct_whose_field_of_view_cuts_the_liver_says_its_volume_is_a_lower_bound():
    engine = SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=4,
                                  batch_predictor=oracle_predictor)
    phantom = make_phantom((12, 40, 44), (4.0, 8.0, 8.0), lesions=[], noise_hu=0.0)
    whole = Segmenter(engine=engine).segment_volume(phantom.ct)
    assert whole.report["liver_volume_ml"] >= PLAUSIBLE_LIVER_ML[0]
    assert not any("part scanned" in w for w in whole.warnings)
    middle = int(np.nonzero((phantom.labels >= 1).any(axis=(0, 1)))[0].mean())
    ct = type(phantom.ct)(np.ascontiguousarray(phantom.ct.array[:, :, :middle]), phantom.ct.geometry, source="cut")
    result = Segmenter(engine=engine).segment_volume(ct)
    notes = [w for w in result.warnings if "field of view cuts the liver" in w]
    assert len(notes) == 1 and notes == [w for w in result.report["warnings"] if "field of view" in w]
    assert f"{result.report['liver_volume_ml']:.0f} mL, is that of the part scanned" in notes[0]


def test_segmenting_a_scan_that_starts_inside_the_liver_gives_the_part_scanned_note_not_implausible():
    engine = SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=4,
                                  batch_predictor=oracle_predictor)
    phantom = make_phantom((12, 40, 44), (2.0, 2.5, 4.0), lesions=[], noise_hu=0.0)
    middle = int(np.nonzero((phantom.labels >= 1).any(axis=(1, 2)))[0].mean())
    ct = type(phantom.ct)(np.ascontiguousarray(phantom.ct.array[middle:]), phantom.ct.geometry, source="cut")
    result = Segmenter(engine=engine).segment_volume(ct)
    assert 0 < result.report["liver_volume_ml"] < PLAUSIBLE_LIVER_ML[0]
    assert any("is that of the part scanned" in w for w in result.warnings)
    assert not any(w.startswith("Implausible result: the liver volume") for w in result.warnings)
    whole = Segmenter(engine=engine).segment_volume(phantom.ct)  # the whole, small liver: still implausible
    assert any(w.startswith("Implausible result: the liver volume") for w in whole.warnings)


def test_implausible_liver_volume_is_in_the_report_and_on_stderr(tmp_path, caplog):
    # a phantom whose liver is about 7 L (coarse 10 x 10 x 15 mm voxels over a wide field of view)
    big = make_phantom((20, 56, 56), (10.0, 10.0, 15.0), lesions=[], noise_hu=0.0).ct
    ct = write_volume(tmp_path / "big.nii.gz", big)
    engine = SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=4,
                                  batch_predictor=oracle_predictor)
    with caplog.at_level(logging.WARNING):
        result = segment_file(ct, tmp_path / "seg.nii.gz", engine=engine, report_path=tmp_path / "r.json")
    assert result.report["liver_volume_ml"] > 5000
    report = json.loads((tmp_path / "r.json").read_text())
    assert any("leaked" in w for w in report["warnings"]) and report["warnings"] == result.warnings
    assert "leaked" in caplog.text


def test_a_liver_taller_than_300_mm_is_flagged_in_the_result_and_report_and_a_normal_one_is_not():
    engine = SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=8,
                                  batch_predictor=oracle_predictor)
    tall = make_phantom((80, 24, 28), (5.0, 5.0, 5.0), lesions=[], noise_hu=0.0).ct  # its liver: 66 of 80 slices
    result = Segmenter(engine=engine).segment_volume(tall)
    spans = [w for w in result.warnings if "from head to foot" in w]
    assert len(spans) == 1 and "spans 330 mm" in spans[0] and result.report["warnings"] == result.warnings
    usual = make_phantom((60, 24, 28), (5.0, 5.0, 5.0), lesions=[], noise_hu=0.0).ct  # 250 mm
    assert not any("from head to foot" in w for w in Segmenter(engine=engine).segment_volume(usual).warnings)


def test_segment_file_loads_the_model_while_it_reads(tmp_path):
    """The first segment_file loads the model in a thread while it reads; the report says so, and the labels
    are those of a segmenter loaded beforehand."""
    import json

    from LiverTumorSegLib.inference import SegmentationOptions
    from LiverTumorSegLib.inference.segmenter import Segmenter
    from LiverTumorSegLib.io import read_label_map, write_volume

    package = tiny_unet_package(tmp_path)
    options = SegmentationOptions(model=str(package.path), device="cpu", precision="fp32", threads=1)
    ct = write_volume(tmp_path / "ct.nii.gz", corner_phantom().ct)
    overlapped = Segmenter(options)
    overlapped.segment_file(ct, tmp_path / "a.nii.gz", report_path=tmp_path / "a.json")
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["model_load_s"]["during_read"] is True and report["timings_s"]["model_load"] > 0.0
    preloaded = Segmenter(options).load()
    preloaded.segment_file(ct, tmp_path / "b.nii.gz", report_path=tmp_path / "b.json")
    assert json.loads((tmp_path / "b.json").read_text())["model_load_s"]["during_read"] is False
    np.testing.assert_array_equal(read_label_map(tmp_path / "a.nii.gz").array, read_label_map(tmp_path / "b.nii.gz").array)


def test_a_bad_input_fails_at_once_and_the_background_load_is_not_repeated(tmp_path, monkeypatch):
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.inference import SegmentationOptions
    from LiverTumorSegLib.inference import segmenter as segmenter_module
    from LiverTumorSegLib.io import write_volume

    package = tiny_unet_package(tmp_path)
    segmenter = segmenter_module.Segmenter(SegmentationOptions(model=str(package.path), device="cpu", threads=1))
    loads = []
    original = segmenter_module.Segmenter._load

    def counted(self, progress):
        loads.append(1)
        original(self, progress)

    monkeypatch.setattr(segmenter_module.Segmenter, "_load", counted)
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not a nifti file")
    with pytest.raises(InputError):
        segmenter.segment_file(bad, tmp_path / "seg.nii.gz")
    assert not (tmp_path / "seg.nii.gz").exists()
    ct = write_volume(tmp_path / "ct.nii.gz", corner_phantom().ct)
    segmenter.segment_file(ct, tmp_path / "seg.nii.gz")  # waits for the load still running, if it is
    assert loads == [1] and (tmp_path / "seg.nii.gz").exists()


def test_a_failed_background_load_is_raised_after_the_read(tmp_path):
    from LiverTumorSegLib.errors import ModelPackageError
    from LiverTumorSegLib.inference import SegmentationOptions
    from LiverTumorSegLib.inference.segmenter import Segmenter
    from LiverTumorSegLib.io import write_volume

    ct = write_volume(tmp_path / "ct.nii.gz", corner_phantom().ct)
    missing = SegmentationOptions(model=str(tmp_path / "no_such_model.safetensors"), device="cpu")
    with pytest.raises(ModelPackageError, match="no_such_model"):
        Segmenter(missing).segment_file(ct, tmp_path / "seg.nii.gz")
    assert not (tmp_path / "seg.nii.gz").exists()


def test_in_memory_segmentation_gets_the_checks_segment_makes(tiny_path):
    # segment_volume ran without any input check: an array scaled to 0..1 came back with half of it "liver"
    from LiverTumorSegLib.volume import CTVolume, ImageGeometry

    segmenter = Segmenter(SegmentationOptions(model=str(tiny_path), device="cpu", threads=1, batch_size=4))
    volume = corner_phantom().ct
    scaled = CTVolume((volume.array - volume.array.min()) / np.ptp(volume.array), volume.geometry)
    with pytest.raises(InputError, match="allow.non.hu"):
        segmenter.segment_volume(scaled)
    with pytest.raises(InputError, match="CTVolume"):
        segmenter.segment_volume(volume.array)
    xyz = CTVolume(np.ascontiguousarray(np.broadcast_to(volume.array[:1, :6, :], (6, 6, volume.shape_zyx[2])).T),
                   ImageGeometry(spacing=(1.0, 1.0, 1.0)))  # (x, y, z) given as (z, y, x): slices 6 x 6
    result = segmenter.segment_volume(xyz)
    assert any("(x, y, z) array" in w for w in result.warnings) and result.report["warnings"] == result.warnings
    allowed = Segmenter(SegmentationOptions(model=str(tiny_path), device="cpu", threads=1, allow_non_hu=True))
    assert any("non-HU" in w for w in allowed.segment_volume(scaled).warnings)


def test_one_segmenter_shared_by_two_threads_gives_each_its_own_result(tiny_path):
    # the engine keeps per-call buffers; two threads on one Segmenter mixed them up (shape errors, or an
    # all-zero tumor probability for one of them)
    import concurrent.futures

    segmenter = Segmenter(SegmentationOptions(model=str(tiny_path), device="cpu", threads=1, batch_size=4,
                                              probabilities=True)).load()
    volumes = two_volumes()
    alone = [segmenter.segment_volume(v) for v in volumes]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for _ in range(2):
            together = list(pool.map(segmenter.segment_volume, volumes))
            for a, b in zip(alone, together):
                np.testing.assert_array_equal(a.labels, b.labels)
                np.testing.assert_array_equal(a.tumor_probability, b.tumor_probability)


def test_non_hu_input_gets_no_hu_thresholds_in_post_processing(monkeypatch):
    # the anatomical rules compare Hounsfield units (a vessel within 15 HU of the liver, lung density): on data
    # scaled to 0..1 the tube rule turned every tube into liver; a non-HU CT now gets the shape-only rules
    from LiverTumorSegLib.inference import postprocess
    from LiverTumorSegLib.volume import CTVolume

    seen = []
    real = postprocess.postprocess_labels

    def spy(*args, **kwargs):
        seen.append(kwargs.get("hu_zyx") is not None)
        return real(*args, **kwargs)

    monkeypatch.setattr(postprocess, "postprocess_labels", spy)
    engine = SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_predictor=oracle_predictor)
    volume = corner_phantom().ct
    Segmenter(SegmentationOptions(device="cpu"), engine=engine).segment_volume(volume)
    scaled = CTVolume((volume.array - volume.array.min()) / np.ptp(volume.array), volume.geometry)
    result = Segmenter(SegmentationOptions(device="cpu", allow_non_hu=True), engine=engine).segment_volume(scaled)
    assert seen == [True, False]
    assert any("rules that read Hounsfield units were skipped" in w and "values lie within 0..1" in w
               for w in result.report["warnings"])
    # ... but allow_non_hu on a CT that is in HU changed its result: the rules were skipped by the flag, not
    # by the values (a darker tube made liver, the left-right check gone)
    in_hu = Segmenter(SegmentationOptions(device="cpu", allow_non_hu=True), engine=engine).segment_volume(volume)
    assert seen == [True, False, True]
    assert not any("Hounsfield units were skipped" in w for w in in_hu.report["warnings"])


@pytest.mark.parametrize("asked,runs,warned", [("gpu", "mps", False), ("gpu", "cuda:0", False), ("gpu", "cpu", True),
                                               ("cuda", "mps", True), ("mps", "mps", False), ("auto", "cpu", False)])
def test_a_given_engine_on_the_device_asked_for_draws_no_warning(asked, runs, warned, caplog):
    # "gpu" means CUDA or a Mac's GPU: an engine on MPS given with device="gpu" warned that it ignored the device
    import types

    from LiverTumorSegLib.inference import segmenter as segmenter_module

    engine = types.SimpleNamespace(device=runs, tta_flip=False, backend="torch", batch_size=8, threads=2,
                                   precision="auto")
    options = segmenter_module._engine_options(SegmentationOptions(device=asked), engine)
    assert options.device == runs
    assert any("ignoring device" in r.getMessage() for r in caplog.records) is warned


def test_segment_volume_refuses_a_package_whose_network_does_not_take_its_input(tmp_path):
    """Only segment_file checked the package's channels; segment_volume failed inside torch ('expected input
    ... to have 1 channels')."""
    from LiverTumorSegLib.errors import ModelPackageError
    from LiverTumorSegLib.models import build_model
    from LiverTumorSegLib.preprocessing import PreprocessingConfig

    config = PreprocessingConfig.preset("default")  # 9 channels: 3 windows x 3 slices
    path = package_module.save_model_package(tmp_path / "mismatch.safetensors",
                                             build_model("unet", 1, 3, channels=(4, 8), strides=(2,)), config)
    segmenter = Segmenter(SegmentationOptions(device="cpu", precision="fp32"),
                          package=package_module.load_model_package(path))
    with pytest.raises(ModelPackageError, match="makes 9 input channels in all but its network takes 1"):
        segmenter.segment_volume(make_phantom(seed=0).ct)


def test_a_model_trained_without_tumors_is_said_not_to_segment_tumors(tmp_path):
    """A package whose training record says no training label held tumor and synthetic lesions were off (a
    liver-only model) reported "tumors: 0" as if it had looked for them; the report (and so the CLI, a batch's
    status and Slicer's panel, which show its warnings) now says it does not segment tumors. A package whose
    training saw tumors, or one that does not record it, gets no such warning."""
    from LiverTumorSegLib.inference.segmenter import untrained_tumor_warnings
    from LiverTumorSegLib.package import rewrite_package_metadata

    assert untrained_tumor_warnings({"training": {"synthetic_lesions": False}}) == []  # not recorded: not known
    assert untrained_tumor_warnings({"training": {"synthetic_lesions": True, "tumor_label_cases": 0}}) == []
    package = tiny_unet_package(tmp_path)
    ct = corner_phantom().ct
    options = SegmentationOptions(model=str(package.path), device="cpu", precision="fp32", threads=1)
    said = "does not segment tumors"
    for tumor_cases, warned in ((1, False), (0, True)):
        rewrite_package_metadata(package.path, lambda meta: meta.update(
            training={"synthetic_lesions": False, "tumor_label_cases": tumor_cases}))
        warnings = Segmenter(options).segment_volume(ct).report["warnings"]
        assert any(said in w for w in warnings) == warned


def test_a_package_object_with_a_dict_preprocessing_takes_the_window_override_and_stays_as_given(tmp_path):
    """A caller's own package object (not a ModelPackage dataclass) whose preprocessing is a plain dict, as in the
    file's metadata: the Segmenter knows its config as a PreprocessingConfig before the run, a window override
    (55 / 350 HU) reaches the engine, and the caller's object keeps its own window (40 / 400 HU)."""
    import copy
    import types

    from LiverTumorSegLib.preprocessing import PreprocessingConfig

    tiny = tiny_unet_package(tmp_path)
    given = tiny.preprocessing.to_dict()
    package = types.SimpleNamespace(preprocessing=copy.deepcopy(given), model=tiny.model, name="own",
                                    metadata=tiny.metadata, path=tiny.path)
    options = SegmentationOptions(device="cpu", threads=1, precision="fp32")
    plain = Segmenter(options, package=package).load()
    assert isinstance(plain.known_preprocessing, PreprocessingConfig)
    assert plain.engine.preprocessing.channels == [{"kind": "window", "level": 40.0, "width": 400.0}]
    overridden = Segmenter(SegmentationOptions(device="cpu", threads=1, precision="fp32", window_level=55.0,
                                               window_width=350.0), package=package).load()
    assert overridden.engine.preprocessing.channels == [{"kind": "window", "level": 55.0, "width": 350.0}]
    assert overridden.known_preprocessing.channels == overridden.engine.preprocessing.channels
    assert package.preprocessing == given and overridden.engine.package is not package


def test_options_given_as_a_dict_are_refused_with_the_way_to_convert_them():
    """A notebook passing the options' dict form got 'must be SegmentationOptions (got dict).' without the way
    from one to the other."""
    with pytest.raises(InputError, match=r"options must be SegmentationOptions \(got dict\); .*"
                                         r"SegmentationOptions\.from_dict"):
        Segmenter({"device": "cpu"})
    with pytest.raises(InputError, match=r"^options must be SegmentationOptions \(got str\)\.$"):
        Segmenter("cpu")


def test_in_memory_segmentation_gets_the_memory_check_segment_makes(tiny_path, monkeypatch):
    """segment_volume went straight to the network: a CT that segment refused at once for memory (19.9 mm pixels
    made a 6816 x 6816 network grid) ran into a MemoryError minutes in, or the out-of-memory killer (the memory
    audit). It is refused before the network now; with checked=True (segment_file has checked) it is not asked
    again."""
    from LiverTumorSegLib import validation
    from LiverTumorSegLib.errors import ResourceError

    segmenter = Segmenter(SegmentationOptions(model=str(tiny_path), device="cpu", threads=1, batch_size=4))
    volume = corner_phantom().ct
    monkeypatch.setattr(validation, "available_memory_bytes", lambda *a, **k: 1 << 20)
    ran = []
    monkeypatch.setattr(Segmenter, "predict", lambda self, *a, **k: ran.append(1))
    with pytest.raises(ResourceError, match="memory"):
        segmenter.segment_volume(volume)
    assert ran == []
    with pytest.raises(AttributeError):  # past the check: the stand-in predict's None reaches finish
        segmenter.segment_volume(volume, checked=True)
    assert ran == [1]
