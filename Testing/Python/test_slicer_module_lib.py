"""The Slicer module's Qt-free helpers (LiverTumorSeg/LiverTumorSegModuleLib): dependency installation with
fakes (nothing is ever installed), the background worker, the segmentation job with an injected engine, and
the panel texts."""
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "LiverTumorSeg"))

from LiverTumorSegLib import mrml  # noqa: E402
from LiverTumorSegLib.errors import CancelledError, InputError  # noqa: E402
from LiverTumorSegLib.progress import CancellationToken  # noqa: E402
from LiverTumorSegLib.volume import CTVolume, ImageGeometry  # noqa: E402
from LiverTumorSegModuleLib import background, dependencies, job, panel_text  # noqa: E402

# ---- dependencies ---------------------------------------------------------------------------------------


def _find_spec_without(*absent):
    return lambda name: None if name in absent else object()


def test_missing_requirements_lists_only_absent_modules():
    missing = dependencies.missing_requirements(find_spec=_find_spec_without("torch", "monai"))
    assert [r.module for r in missing] == ["torch", "monai"]
    assert dependencies.missing_requirements(find_spec=_find_spec_without()) == []


def test_ensure_requirements_installs_after_confirmation_torch_via_pytorch_extension():
    questions, pip_calls, torch_calls = [], [], []
    installed = dependencies.ensure_requirements(
        confirm=lambda q: questions.append(q) or True, pip_install=pip_calls.append,
        install_torch=lambda: torch_calls.append(1) or "torch-module",
        find_spec=_find_spec_without("torch", "monai", "yaml"))
    assert [r.module for r in installed] == ["torch", "monai", "yaml"]
    assert pip_calls == ["monai>=1.3", "pyyaml>=6.0"] and torch_calls == [1]
    assert len(questions) == 1 and "torch, monai>=1.3, pyyaml>=6.0" in questions[0]
    assert "PyTorchUtils" in questions[0]


def test_ensure_requirements_declined_installs_nothing():
    pip_calls = []
    with pytest.raises(dependencies.DependencyDeclinedError, match="Nothing was installed"):
        dependencies.ensure_requirements(confirm=lambda q: False, pip_install=pip_calls.append,
                                         install_torch=lambda: pytest.fail("must not install torch"),
                                         find_spec=_find_spec_without("monai", "torch"))
    assert pip_calls == []


def test_ensure_requirements_without_pytorch_extension_or_failed_torch_install():
    with pytest.raises(RuntimeError, match="'PyTorch' extension"):
        dependencies.ensure_requirements(lambda q: True, lambda p: None, None, find_spec=_find_spec_without("torch"))
    with pytest.raises(RuntimeError, match="PyTorch was not installed"):
        dependencies.ensure_requirements(lambda q: True, lambda p: None, lambda: None,
                                         find_spec=_find_spec_without("torch"))


def test_nothing_missing_asks_nothing():
    assert dependencies.ensure_requirements(lambda q: pytest.fail("asked"), lambda p: pytest.fail("pip"),
                                            None, find_spec=_find_spec_without()) == []


# ---- background worker ----------------------------------------------------------------------------------

def _collect(task, timeout=5.0):
    assert task.wait(timeout)
    return task.poll()


def test_background_task_reports_progress_then_result_from_a_thread():
    threads = []

    def work(progress, cancel):
        threads.append(threading.current_thread().name)
        progress(0.5, "half")
        return 42

    events = _collect(background.BackgroundTask(work).start())
    assert [(e.kind, e.fraction, e.stage) for e in events[:-1]] == [("progress", 0.5, "half")]
    assert events[-1].kind == background.DONE and events[-1].result == 42
    assert threads == ["LiverTumorSeg worker"]


def test_background_task_cancel_and_failure():
    release = threading.Event()

    def slow(progress, cancel):
        release.wait(5)
        cancel.raise_if_cancelled()
        return "not reached"

    task = background.BackgroundTask(slow).start()
    task.cancel()
    release.set()
    assert [e.kind for e in _collect(task)] == [background.CANCELLED]

    task = background.BackgroundTask(lambda p, c: 1 / 0)
    task.run_here()
    (event,) = task.poll()
    assert event.kind == background.FAILED and isinstance(event.error, ZeroDivisionError)
    assert "ZeroDivisionError" in event.details
    assert task.poll() == []


# ---- job ------------------------------------------------------------------------------------------------

PRE = {"channels": [{"kind": "hist_scaled"}, {"kind": "window", "preset": "liver", "level": 60.0, "width": 200.0},
                    {"kind": "window", "level": 0.0, "width": 2000.0}], "context_slices": 1}


def test_override_window_changes_only_the_first_window_channel():
    out = job.override_window(PRE, 50, 350)
    assert out["channels"][1] == {"kind": "window", "level": 50.0, "width": 350.0}
    assert out["channels"][0] == PRE["channels"][0] and out["channels"][2] == PRE["channels"][2]
    assert PRE["channels"][1]["level"] == 60.0  # input untouched
    with pytest.raises(InputError, match="no intensity window"):
        job.override_window({"channels": [{"kind": "zscore"}]}, 40, 400)
    with pytest.raises(InputError, match="positive"):
        job.override_window(PRE, 40, 0)


def _volume():
    return CTVolume(np.zeros((4, 5, 6), np.int16), ImageGeometry(spacing=(1.0, 1.0, 2.0)))


def test_compute_segmentation_passes_options_and_maps_progress():
    calls, stages = {}, []
    labels = np.zeros((4, 5, 6), np.uint8)

    def fake_segment(volume, package, device, postprocessing, progress, cancel):
        calls.update(package=package, device=device, postprocessing=postprocessing)
        progress(0.5, "inference")
        progress(1.0, "done")
        return SimpleNamespace(labels=labels, report={"liver_volume_ml": 0.0})

    options = job.SegmentationOptions(model_path="m.safetensors", device="cpu",
                                      postprocessing={"min_lesion_ml": 0.5})
    result = job.compute_segmentation(_volume(), options, progress=lambda f, s: stages.append((round(f, 3), s)),
                                      load_package=lambda path: "pkg:" + path, segment=fake_segment,
                                      make_postprocessing=lambda o: o.postprocessing)
    assert result.labels is labels
    assert calls == {"package": "pkg:m.safetensors", "device": "cpu", "postprocessing": {"min_lesion_ml": 0.5}}
    assert stages == [(0.0, "loading model"), (0.525, "inference"), (1.0, "done")]


def test_compute_segmentation_rejects_bad_device_shape_and_honours_cancel():
    ok_segment = lambda volume, package, **kw: SimpleNamespace(labels=np.zeros((1, 1, 1), np.uint8), report={})
    with pytest.raises(InputError, match="Unknown device"):
        job.compute_segmentation(_volume(), job.SegmentationOptions("m", device="tpu"), load_package=str,
                                 segment=ok_segment, make_postprocessing=lambda o: None)
    with pytest.raises(RuntimeError, match="expected"):
        job.compute_segmentation(_volume(), job.SegmentationOptions("m"), load_package=str, segment=ok_segment,
                                 make_postprocessing=lambda o: None)
    token = CancellationToken()
    token.cancel()
    with pytest.raises(CancelledError):
        job.compute_segmentation(_volume(), job.SegmentationOptions("m"), cancel=token, load_package=str,
                                 segment=lambda *a, **k: pytest.fail("ran after cancel"),
                                 make_postprocessing=lambda o: None)


def test_compute_segmentation_default_postprocessing_is_the_library_one():
    pytest.importorskip("scipy")
    from LiverTumorSegLib.inference import PostprocessingOptions
    got = job._postprocessing(job.SegmentationOptions("m", postprocessing={"fill_liver_holes": False}))
    assert got == PostprocessingOptions(fill_liver_holes=False)


def test_apply_result_writes_segments_and_table():
    pytest.importorskip("slicer")
    from LiverTumorSegLib import mrml
    scene = mrml.make_headless_scene()
    volume = _volume()
    labels = np.zeros(volume.array.shape, np.uint8)
    labels[1:3, 1:4, 1:5] = 1
    labels[2, 2, 2] = 2
    report = {"liver_volume_ml": 0.048, "tumor_volume_ml": 0.002, "tumor_burden_percent": 4.17,
              "lesions": [{"id": 1, "volume_ml": 0.002, "longest_axial_diameter_mm": 1.0,
                           "centroid_ras_mm": [-2.0, -2.0, 4.0], "mean_hu": 0.0}]}
    seg, table = job.apply_result(scene, SimpleNamespace(labels=labels, report=report), volume, show_3d=False,
                                  name="case1")
    assert seg.GetName() == "case1 liver segmentation" and table.GetName() == "case1 liver lesions"
    np.testing.assert_array_equal(mrml.segmentation_to_labels(seg, volume.geometry, labels.shape), labels)
    assert [r["Volume"] for r in mrml.lesion_table_rows(table)] == [0.002]


# ---- panel texts ----------------------------------------------------------------------------------------

def test_describe_model_shows_description_training_data_and_dice():
    text = panel_text.describe_model({
        "description": "2.5D U-Net", "architecture": {"name": "unet2d", "in_channels": 9},
        "training": {"data": "LiTS 131 CTs"},
        "validation": {"dice_liver": 0.9512, "dice_tumor": 0.61, "loss": 0.2, "per_case": {"dice_mean": 0.5}}})
    assert text.splitlines() == ["2.5D U-Net", "Network: unet2d (9 input channels)", "Training data: LiTS 131 CTs",
                                 "Validation: dice liver 0.951; dice tumor 0.610; per case dice mean 0.500"]
    assert panel_text.describe_model({"error": "bad sha"}) == "This model cannot be used: bad sha"
    assert panel_text.describe_model({}) == "Validation: no Dice reported"


def test_describe_gpu_and_preprocessing_and_summary():
    gib = 1024 ** 3
    assert panel_text.describe_gpu({"name": "NVIDIA H100", "total_bytes": 80 * gib, "free_bytes": 79.5 * gib}) == \
        "GPU: NVIDIA H100, 80.0 GiB memory (79.5 GiB free)"
    assert panel_text.describe_gpu({}).startswith("No CUDA GPU")
    assert panel_text.describe_preprocessing(dict(PRE, target_spacing_mm=1.5)) == (
        "histogram-scaled, window L60/W200 HU, window L0/W2000 HU; 2.5D context +/-1 slice(s); 1.5 mm pixels")
    assert panel_text.summary_text({"liver_volume_ml": 1520.04, "tumor_volume_ml": 12.5,
                                    "tumor_burden_percent": 0.8224, "lesions": [{}, {}]}) == \
        "Liver 1520.0 mL, tumor 12.5 mL (burden 0.82 %), 2 lesion(s)"
    assert panel_text.summary_text({}) == "No result yet."


def test_model_choices_mark_default_and_unusable():
    items = panel_text.model_choices([
        {"name": "default", "path": "/a/default.safetensors", "source": "bundled", "default": True, "error": None},
        {"name": "broken", "path": "/b/broken.safetensors", "source": "user", "error": "truncated"}])
    assert items == [{"text": "default (bundled) - default", "path": "/a/default.safetensors"},
                     {"text": "broken (user) - unusable", "path": "/b/broken.safetensors"}]


def test_compute_segmentation_runs_the_real_library_on_a_tiny_package(tmp_path):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from LiverTumorSegLib.models import build_model
    from LiverTumorSegLib.package import load_model_package, save_model_package
    from LiverTumorSegLib.phantom import make_phantom
    from LiverTumorSegLib.preprocessing import PreprocessingConfig

    cfg = PreprocessingConfig(channels=[{"kind": "window", "level": 40, "width": 400}], context_slices=0,
                              target_spacing_mm=None, size_multiple=16)
    path = save_model_package(tmp_path / "tiny.safetensors", build_model("unet", cfg.in_channels, 3), cfg)
    options = job.SegmentationOptions(model_path=str(path), device="cpu", window_level=50.0, window_width=300.0)
    overridden = job._with_window_override(load_model_package(str(path)), options)
    assert overridden.preprocessing.channels[0]["level"] == 50.0
    assert overridden.preprocessing.channels[0]["width"] == 300.0

    ct = make_phantom(shape_zyx=(6, 32, 32)).ct
    stages = []
    result = job.compute_segmentation(ct, options, progress=lambda f, s: stages.append(f))
    assert result.labels.shape == (6, 32, 32) and result.labels.dtype == np.uint8
    assert set(np.unique(result.labels)) <= {0, 1, 2}
    assert "liver_volume_ml" in result.report and stages == sorted(stages) and stages[-1] == 1.0


# ---- SegmentationRun: the Logic's run (volume node -> worker thread -> MRML on poll), slicer-core -----------

def _headless_ct_node(scene, volume):
    from vtk.util import numpy_support
    import vtk
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT")
    image = vtk.vtkImageData()
    nz, ny, nx = volume.array.shape
    image.SetDimensions(nx, ny, nz)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(
        np.ascontiguousarray(volume.array).ravel(), deep=True,
        array_type=numpy_support.get_vtk_array_type(volume.array.dtype)))
    node.SetAndObserveImageData(image)
    node.SetIJKToRASMatrix(mrml._numpy_to_matrix(volume.geometry.ijk_to_ras()))
    return node


def _wait_for_outcome(run, timeout=120.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        outcome = run.poll()
        if outcome is not None:
            return outcome
        time.sleep(0.02)
    raise AssertionError("the run did not finish in time")


def _labels_for(volume):
    labels = np.zeros(volume.array.shape, np.uint8)
    labels[1:3, 1:4, 1:5] = 1
    labels[2, 2, 2] = 2
    return labels


def test_segmentation_run_writes_mrml_only_when_polled_on_the_calling_thread():
    pytest.importorskip("slicer")
    from LiverTumorSegLib import mrml
    scene = mrml.make_headless_scene()
    volume = _volume()
    node = _headless_ct_node(scene, volume)
    release, threads, stages = threading.Event(), [], []

    def compute(vol, options, progress, cancel):
        threads.append(threading.current_thread().name)
        np.testing.assert_array_equal(vol.array, volume.array)  # the node was read into arrays before
        progress(0.5, "half")
        release.wait(5)
        return SimpleNamespace(labels=_labels_for(vol), report={"liver_volume_ml": 0.048, "tumor_volume_ml": 0.002,
                                                                "tumor_burden_percent": 4.17, "lesions": []})

    run = job.SegmentationRun(scene, node, job.SegmentationOptions("m"), compute=compute, show_3d=False,
                              progress=lambda f, s: stages.append((f, s))).start()
    time.sleep(0.2)
    assert run.poll() is None and stages == [(0.5, "half")]
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0  # the worker never touches MRML
    release.set()
    outcome = _wait_for_outcome(run)
    assert threads == ["LiverTumorSeg worker"] and outcome.kind == background.DONE
    assert outcome.segmentation_node.GetName() == "CT liver segmentation"
    np.testing.assert_array_equal(
        mrml.segmentation_to_labels(outcome.segmentation_node, volume.geometry, volume.array.shape),
        _labels_for(volume))
    assert outcome.table_node.GetTable().GetNumberOfRows() == 0 and outcome.report["liver_volume_ml"] == 0.048


def test_segmentation_run_cancelled_after_the_worker_finished_writes_nothing():
    pytest.importorskip("slicer")
    from LiverTumorSegLib import mrml
    scene = mrml.make_headless_scene()
    node = _headless_ct_node(scene, _volume())
    run = job.SegmentationRun(scene, node, job.SegmentationOptions("m"),
                              compute=lambda v, o, p, c: SimpleNamespace(labels=_labels_for(v), report={}))
    run.run_here()
    run.cancel()  # e.g. the scene was closed between the worker's end and the next timer tick
    assert run.poll().kind == background.CANCELLED
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0


def test_segmentation_run_failure_while_writing_mrml_is_a_failed_outcome():
    pytest.importorskip("slicer")
    from LiverTumorSegLib import mrml
    from LiverTumorSegLib.errors import LabelError
    scene = mrml.make_headless_scene()
    node = _headless_ct_node(scene, _volume())
    bad = lambda v, o, p, c: SimpleNamespace(labels=np.full(v.array.shape, 7, np.uint8), report={})  # noqa: E731
    outcome = job.SegmentationRun(scene, node, job.SegmentationOptions("m"), compute=bad).run_here().poll()
    assert outcome.kind == background.FAILED and isinstance(outcome.error, LabelError)
    assert "only 0 (background), 1 (liver) and 2 (tumor)" in str(outcome.error) and "LabelError" in outcome.details
    with pytest.raises(InputError, match="No input volume"):
        job.SegmentationRun(scene, None, job.SegmentationOptions("m"))


def test_bundled_model_on_the_sample_ct_through_the_module_run(tmp_path):
    """End to end as in Slicer: NIfTI -> volume storage node -> SegmentationRun (real bundled model, worker
    thread, CPU) -> segmentation node. The sample CT is cut to its upper 56 of 112 slices (the whole liver
    lies in slices 70..111) to halve the run time; Dice vs the reference is 0.98 on the full CT too."""
    slicer_module = pytest.importorskip("slicer")
    torch = pytest.importorskip("torch")
    nib = pytest.importorskip("nibabel")
    from LiverTumorSegLib.package import resolve_model
    try:
        model = resolve_model("default")
    except Exception:  # noqa: BLE001
        pytest.skip("no bundled default model in Resources/Models")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        _run_bundled_model_on_sample(tmp_path, slicer_module, nib, model)
    finally:
        torch.set_num_threads(threads)


def _run_bundled_model_on_sample(tmp_path, slicer_module, nib, model):
    from LiverTumorSegLib import resources
    ct_path = tmp_path / "ct.nii.gz"
    nib.save(nib.load(str(resources.sample_ct_path())).slicer[:, :, 56:], str(ct_path))
    reference_img = nib.load(str(resources.sample_reference_path())).slicer[:, :, 56:]
    reference = np.asarray(reference_img.dataobj).transpose(2, 1, 0) > 0  # (z, y, x)

    scene = mrml.make_headless_scene()
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "sample")
    storage = slicer_module.vtkMRMLVolumeArchetypeStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(ct_path))
    assert storage.ReadData(node)

    stages = []
    options = job.SegmentationOptions(str(model), device="cpu")
    run = job.SegmentationRun(scene, node, options, show_3d=False, progress=lambda f, s: stages.append(f)).start()
    outcome = _wait_for_outcome(run, timeout=300)
    assert outcome.kind == background.DONE, outcome.details
    assert stages == sorted(stages) and stages[-1] == 1.0

    seg = outcome.segmentation_node
    segmentation = seg.GetSegmentation()
    assert list(segmentation.GetSegmentIDs()) == ["livertumorseg_liver", "livertumorseg_tumor"]
    for spec in mrml.SEGMENTS:
        segment = segmentation.GetSegment(spec.segment_id)
        assert segment.GetName() == spec.name
        np.testing.assert_allclose(segment.GetColor(), spec.color, atol=1e-6)
        assert mrml.segment_terminology_tag(segment) == spec.terminology_tag()
    assert "SCT^10200004^Liver" in mrml.segment_terminology_tag(segmentation.GetSegment("livertumorseg_liver"))
    assert "SCT^108369006^Neoplasm" in mrml.segment_terminology_tag(segmentation.GetSegment("livertumorseg_tumor"))
    assert seg.GetNodeReference(seg.GetReferenceImageGeometryReferenceRole()).GetID() == node.GetID()

    volume = run.volume
    labels = mrml.segmentation_to_labels(seg, volume.geometry, volume.array.shape)
    predicted = labels >= 1
    dice = 2.0 * np.logical_and(predicted, reference).sum() / (predicted.sum() + reference.sum())
    liver_ml = predicted.sum() * volume.geometry.voxel_volume_ml
    assert dice > 0.9, dice
    assert 900.0 < liver_ml < 1400.0 and abs(liver_ml - outcome.report["liver_volume_ml"]) < 1e-6  # ref 1123 mL
    assert outcome.table_node.GetTable().GetNumberOfRows() == len(outcome.report["lesions"])


def test_training_data_text_prefers_description_and_hides_build_machine_paths():
    assert panel_text.training_data_text({"data": "/root/out/cases.csv", "cases": ["a", "b", "c"]}) == \
        "3 training case(s)"
    assert panel_text.training_data_text({"data": "C:\\\\data\\\\x", "num_train_cases": 131}) == "131 training case(s)"
    assert panel_text.training_data_text({"data": "/root/out/cases.csv",
                                          "data_description": "3 real CTs"}) == "3 real CTs"
    assert panel_text.training_data_text({"data": "/x.csv"}) == ""
    assert panel_text.training_data_text({"data": "LiTS liver/tumor CTs (131)"}) == "LiTS liver/tumor CTs (131)"
    text = panel_text.describe_model({"validation": {"dice_liver_mean": 0.7329,
                                                     "method": "leave-one-patient-out over 3 patients: details"}})
    assert text == "Validation (leave-one-patient-out over 3 patients): dice liver mean 0.733"


def test_describe_model_of_the_bundled_package_shows_its_training_data_not_a_path():
    from LiverTumorSegLib.package import read_package_metadata, resolve_model
    try:
        metadata = read_package_metadata(resolve_model("default"))
    except Exception:  # noqa: BLE001
        pytest.skip("no bundled default model in Resources/Models")
    text = panel_text.describe_model(metadata)
    assert "Training data: " in text and "/root/" not in text and "dice liver" in text
