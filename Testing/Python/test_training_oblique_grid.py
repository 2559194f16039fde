"""Training gives the network an oblique CT on the patient-aligned grid ``segment`` uses
(:mod:`LiverTumorSegLib.inference.axis_aligned`): the slice cache holds a CT turned more than 5 degrees against the
patient's axes resampled as ``segment`` resamples it (labels by their largest share), the log and the package name
such cases, and ``oblique_grid: stored`` keeps the CT's own slices. Before, training cached an oblique CT's own
(oblique) slices: a package learned from slices unlike those segment gives it, and its slice-level validation Dice
was taken on another grid than segment's. An axis-aligned CT is cached bit for bit as before."""
import json

import numpy as np
import pytest

from LiverTumorSegLib.errors import InputError
from LiverTumorSegLib.inference import axis_aligned
from LiverTumorSegLib.io import write_label_map, write_volume
from LiverTumorSegLib.orientation import canonicalize
from LiverTumorSegLib.phantom import make_phantom
from LiverTumorSegLib.preprocessing import PreprocessingConfig, SlicePreprocessor
from LiverTumorSegLib.training.datasets import Case
from LiverTumorSegLib.training.labels import IGNORE_LABEL
from LiverTumorSegLib.training.slice_cache import build_slice_cache, cache_key
from LiverTumorSegLib.volume import ImageGeometry

SHAPE_ZYX = (12, 40, 40)
SPACING_XYZ = (1.5, 1.5, 3.0)


def _tilted(degrees):
    """A direction turned ``degrees`` about left-right (x), centred on the LPS origin, and its origin."""
    a = np.deg2rad(degrees)
    direction = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(a), -np.sin(a)], [0.0, np.sin(a), np.cos(a)]])
    half = (np.asarray(SHAPE_ZYX[::-1], dtype=float) - 1.0) / 2.0 * np.asarray(SPACING_XYZ)
    return tuple(direction.ravel()), tuple(-direction @ half)


def _case(root, degrees, name="c", seed=0):
    direction, origin = _tilted(degrees)
    phantom = make_phantom(SHAPE_ZYX, SPACING_XYZ, origin=origin, direction=direction, seed=seed)
    root.mkdir(parents=True, exist_ok=True)
    image = write_volume(root / f"{name}.nii.gz", phantom.ct)
    label = write_label_map(root / f"{name}_lab.nii.gz", phantom.labels, phantom.ct.geometry)
    return Case(name, f"p_{name}", str(image), str(label), "csv"), phantom


def _config(**changes):
    settings = dict(channels=[{"kind": "window", "level": 40.0, "width": 400.0}], context_slices=1,
                    crop_to_body=False, size_multiple=8, target_spacing_mm=1.5)
    settings.update(changes)
    return PreprocessingConfig(**settings)


def _as_segment_gives_it(preprocessor, phantom):
    """The network grid of the CT and labels on segment's aligned grid (computed here from the CT as stored, as
    segment reads it), labels by their largest share; outside the CT's footprint (where segment labels nothing)
    IGNORE_LABEL."""
    ct = phantom.ct
    target = preprocessor.config.target_spacing_mm
    grid = axis_aligned.aligned_grid(ct.geometry, ct.shape_zyx, axis_aligned.aligned_spacing_xyz(ct, target))
    on_grid = axis_aligned.resampled_onto(ct, grid)
    labels = axis_aligned.labels_back(phantom.labels, ct.geometry, grid.geometry, grid.shape_zyx)
    hu, info = preprocessor.spatial_forward(on_grid.array, on_grid.spacing_zyx)
    labels = preprocessor.labels_forward(labels, info)
    inside = axis_aligned.footprint(grid.geometry, grid.shape_zyx, ct.geometry, ct.shape_zyx).astype(np.uint8)
    labels[preprocessor.labels_forward(inside, info) == 0] = IGNORE_LABEL
    return hu, labels, grid


def test_an_oblique_training_ct_is_cached_on_the_aligned_grid_segment_uses_and_named_in_the_log(tmp_path):
    case, phantom = _case(tmp_path / "data", 20.0)
    preprocessor = SlicePreprocessor(_config())
    said = []
    (cached,) = build_slice_cache([case], preprocessor, tmp_path / "cache", log=said.append)
    expected_hu, expected_labels, grid = _as_segment_gives_it(preprocessor, phantom)
    canonical = canonicalize(phantom.ct)[0]
    as_stored, _ = preprocessor.spatial_forward(canonical.array, canonical.spacing_zyx)
    assert cached.hu.shape != as_stored.shape  # 12 oblique slices before; the aligned grid has more
    assert cached.hu.shape == expected_hu.shape and cached.hu.shape[0] == grid.shape_zyx[0]
    np.testing.assert_allclose(cached.hu, expected_hu, atol=0.01)  # HU; float32 rounding
    np.testing.assert_array_equal(cached.labels, expected_labels)
    # no label is lost: every lesion is still there; the liver keeps its volume within 2 %, the lesions (two balls
    # of about 30 and 4 voxels) theirs within 25 % (the largest share moves a voxel's worth at their edges: 0.23 mL
    # -> 0.19 here, 0.20 nearest-neighbour)
    from scipy import ndimage

    voxel_ml = float(np.prod(SPACING_XYZ)) / 1000.0
    aligned_ml = float(np.prod(grid.geometry.spacing)) / 1000.0
    for value, tolerance in ((1, 0.02), (2, 0.25)):
        before = np.count_nonzero(phantom.labels == value) * voxel_ml
        after = np.count_nonzero(np.asarray(cached.labels) == value) * aligned_ml
        assert before > 0 and abs(after - before) / before < tolerance, (value, before, after)
    lesions = ndimage.label(phantom.labels == 2)[1]
    assert lesions >= 1 and ndimage.label(np.asarray(cached.labels) == 2)[1] == lesions
    assert cached.network_grid["kind"] == "axis_aligned"
    assert cached.network_grid["shape_zyx"] == list(grid.shape_zyx)
    assert cached.network_grid["obliquity_degrees"] == pytest.approx(20.0)
    assert cached.spacing_zyx == pytest.approx((3.0, 1.5, 1.5))
    named = [line for line in said if line.startswith("case c: ")]
    assert len(named) == 1 and "turned 20.0 degrees" in named[0] and "patient-aligned grid" in named[0]
    # reused from the cache: named again, not rebuilt
    said.clear()
    (again,) = build_slice_cache([case], preprocessor, tmp_path / "cache", log=said.append)
    assert not [line for line in said if line.startswith("caching")]
    assert [line for line in said if line.startswith("case c: ")] == named
    assert again.network_grid == cached.network_grid


def test_oblique_grid_stored_caches_the_ct_s_own_slices_in_another_cache_folder(tmp_path):
    case, phantom = _case(tmp_path / "data", 20.0)
    preprocessor = SlicePreprocessor(_config())
    said = []
    (cached,) = build_slice_cache([case], preprocessor, tmp_path / "cache", log=said.append, oblique_grid="stored")
    canonical = canonicalize(phantom.ct)[0]
    as_stored, _ = preprocessor.spatial_forward(canonical.array, canonical.spacing_zyx)
    np.testing.assert_allclose(cached.hu, as_stored, atol=1e-3)
    assert cached.network_grid is None and not [line for line in said if line.startswith("case c: ")]
    assert cache_key({}, None, "stored") != cache_key({}, None, "aligned")
    with pytest.raises(InputError, match="oblique_grid must be one of aligned, stored"):
        build_slice_cache([case], preprocessor, tmp_path / "cache", oblique_grid="bogus")


@pytest.mark.parametrize("degrees", [0.0, 4.0])
def test_an_axial_or_nearly_axial_training_ct_is_cached_bit_for_bit_as_before(tmp_path, degrees):
    """As segment: at most 5 degrees the CT's own grid (the cache folder's name changed with the format only)."""
    case, phantom = _case(tmp_path / "data", degrees)
    preprocessor = SlicePreprocessor(_config())
    said = []
    (cached,) = build_slice_cache([case], preprocessor, tmp_path / "cache", log=said.append)
    canonical, reorientation = canonicalize(phantom.ct)
    hu, info = preprocessor.spatial_forward(canonical.array, canonical.spacing_zyx)
    labels = preprocessor.labels_forward(reorientation.to_canonical(phantom.labels), info)
    assert np.array_equal(np.asarray(cached.hu), np.ascontiguousarray(hu, dtype=np.float32))
    assert np.array_equal(np.asarray(cached.labels), labels)
    assert cached.network_grid is None and not [line for line in said if line.startswith("case c: ")]


def test_an_aligned_grid_ct_keeps_its_own_grid_whatever_oblique_grid(tmp_path):
    """The aligned grid of an axis-aligned geometry is its own grid (the identity): nothing to resample."""
    geometry = ImageGeometry(spacing=SPACING_XYZ, origin=(0.0, 0.0, 0.0))
    grid = axis_aligned.aligned_grid(geometry, SHAPE_ZYX, SPACING_XYZ)
    assert grid.shape_zyx == SHAPE_ZYX


def test_the_training_option_is_checked():
    from LiverTumorSegLib.training.config import TrainConfig

    with pytest.raises(InputError, match="oblique_grid='sideways' is not one of aligned, stored"):
        TrainConfig.from_dict(dict(data="x.csv", output="m.safetensors", oblique_grid="sideways")).validate()


def test_a_tiny_training_on_a_tilted_phantom_learns_from_aligned_slices_and_the_package_says_so(tmp_path):
    """Trains (1 step, seeded) on two CTs turned 20 degrees; the slices it sampled (the cache it built) are
    segment's aligned grid, and the package lists both cases under ``training.cases_on_aligned_grid``."""
    import torch

    from LiverTumorSegLib.package import read_package_metadata
    from LiverTumorSegLib.training.config import TrainConfig
    from LiverTumorSegLib.training.trainer import train

    torch.manual_seed(0)
    torch.set_num_threads(1)
    rows = ["image,label,patient,case"]
    phantoms = {}
    for i in range(2):
        case, phantoms[f"t{i}"] = _case(tmp_path / "data", 20.0, name=f"t{i}", seed=i)
        rows.append(f"{case.image_path},{case.label_path},p{i},t{i}")
    (tmp_path / "cases.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    preprocessing = {"channels": [{"kind": "window", "level": 40, "width": 400}], "context_slices": 1,
                     "target_spacing_mm": 1.5, "size_multiple": 8, "crop_to_body": False}
    config = TrainConfig.from_dict(dict(
        data=str(tmp_path / "cases.csv"), model="unet", model_options={"channels": [4, 8, 16]},
        preprocessing=preprocessing, epochs=1, iterations_per_epoch=1, batch_size=2, patch_size=32, num_workers=0,
        val_fraction=0.5, output=str(tmp_path / "m.safetensors"), cache_dir=str(tmp_path / "cache"),
        progress_bar=False, tensorboard=False, seed=3))
    said = []
    result = train(config, log=said.append)
    meta = read_package_metadata(result.package_path)
    training = meta["training"]
    # the whole-volume validation (segment's pipeline, oblique_grid as trained) ran on the oblique validation case
    assert not [line for line in said if "whole-volume validation skipped" in line]
    assert [row["case"] for row in meta["validation"]["whole_volume"]["cases"]] == list(result.val_cases)
    grids = training["cases_on_aligned_grid"]
    assert sorted(grids) == ["t0", "t1"]
    assert {grids[c]["used_for"] for c in grids} == {"training", "validation"}
    assert all(grids[c]["obliquity_degrees"] == pytest.approx(20.0) for c in grids)
    assert training["config"]["oblique_grid"] == "aligned"
    assert [line for line in said if line.startswith("case t0: ") and "patient-aligned grid" in line]
    preprocessor = SlicePreprocessor(PreprocessingConfig.from_dict(preprocessing))
    sidecars = sorted((tmp_path / "cache").glob("*/*.json"))
    assert len(sidecars) == 2
    for sidecar in sidecars:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        expected_hu, expected_labels, _ = _as_segment_gives_it(preprocessor, phantoms[meta["case_id"]])
        stem = str(sidecar)[:-len(".json")]
        np.testing.assert_allclose(np.load(stem + ".hu.npy"), expected_hu, atol=0.01)
        np.testing.assert_array_equal(np.load(stem + ".labels.npy"), expected_labels)


@pytest.mark.parametrize("oblique_grid", ["aligned", "stored"])
def test_a_ct_turned_30_degrees_is_not_warned_of_as_read_in_oblique_slices_when_training_aligns_it(
        tmp_path, caplog, oblique_grid):
    """Training on the aligned grid warned 'the model reads the grid's slices as axial slices ... Resample it onto an
    axial, patient-aligned grid first', which it no longer does; with ``stored`` it still does, and is warned of."""
    import logging

    from LiverTumorSegLib.training import datasets

    case, _ = _case(tmp_path / "data", 30.0, name=f"w_{oblique_grid}")
    datasets._WARNED_CASES.clear()
    with caplog.at_level(logging.WARNING, logger="LiverTumorSegLib.training.datasets"):
        build_slice_cache([case], SlicePreprocessor(_config()), tmp_path / "cache", oblique_grid=oblique_grid)
    oblique = [r.getMessage() for r in caplog.records if "reads the grid's slices as axial slices" in r.getMessage()]
    assert len(oblique) == (1 if oblique_grid == "stored" else 0), oblique


def _tiny_run_before_oblique_grid(tmp_path):
    """A tiny seeded training (1 epoch, schedule none) on CTs turned 20 degrees, whose checkpoint's saved config
    then has ``oblique_grid`` removed, as a checkpoint written before the option existed has; and the values that
    resume it with 2 epochs."""
    import torch

    from LiverTumorSegLib.training.checkpoint import load_checkpoint, save_checkpoint
    from LiverTumorSegLib.training.config import TrainConfig
    from LiverTumorSegLib.training.trainer import train

    torch.manual_seed(0)
    torch.set_num_threads(1)
    rows = ["image,label,patient,case"]
    for i in range(2):
        case, _ = _case(tmp_path / "data", 20.0, name=f"t{i}", seed=i)
        rows.append(f"{case.image_path},{case.label_path},p{i},t{i}")
    (tmp_path / "cases.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    values = dict(
        data=str(tmp_path / "cases.csv"), model="unet", model_options={"channels": [4, 8, 16]},
        preprocessing={"channels": [{"kind": "window", "level": 40, "width": 400}], "context_slices": 1,
                       "target_spacing_mm": 1.5, "size_multiple": 8, "crop_to_body": False},
        epochs=1, iterations_per_epoch=1, batch_size=2, patch_size=32, num_workers=0, schedule="none",
        val_fraction=0.5, output=str(tmp_path / "m.safetensors"), cache_dir=str(tmp_path / "cache"),
        log_dir=str(tmp_path / "run"), progress_bar=False, tensorboard=False, seed=3)
    train(TrainConfig.from_dict(values), log=lambda text: None)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    payload = load_checkpoint(last, map_location="cpu")
    saved = json.loads(payload["config"]) if isinstance(payload["config"], str) else dict(payload["config"])
    saved.pop("oblique_grid")
    payload["config"] = json.dumps(saved, sort_keys=True) if isinstance(payload["config"], str) else saved
    save_checkpoint(last, payload)

    def without_option(meta):  # the run's package records no oblique_grid either, as one written before it did not
        config = meta["training"]["config"]
        config = json.loads(config) if isinstance(config, str) else config
        config.pop("oblique_grid", None)
        meta["training"]["config"] = config

    from LiverTumorSegLib.package import rewrite_package_metadata

    rewrite_package_metadata(tmp_path / "m.safetensors", without_option)
    return dict(values, epochs=2, resume=True)


@pytest.fixture(scope="module")
def run_before_oblique_grid(tmp_path_factory):
    """One :func:`_tiny_run_before_oblique_grid` for the tests that resume or overwrite it (each a copy of it, made
    by :func:`_copy_of_run_before_oblique_grid`): (its folder, the values that resume it)."""
    root = tmp_path_factory.mktemp("before_oblique_grid")
    return root, _tiny_run_before_oblique_grid(root)


def _copy_of_run_before_oblique_grid(run_before_oblique_grid, tmp_path):
    """The shared run's training folder, package and slice cache copied into ``tmp_path``, its CTs read where they
    are (no test changes them), and the values that resume the copy with 2 epochs."""
    import shutil

    root, values = run_before_oblique_grid
    for name in ("run", "cache"):
        shutil.copytree(root / name, tmp_path / name)
    shutil.copy2(root / "m.safetensors", tmp_path / "m.safetensors")
    return dict(values, output=str(tmp_path / "m.safetensors"), cache_dir=str(tmp_path / "cache"),
                log_dir=str(tmp_path / "run"))


def test_resuming_a_checkpoint_from_before_oblique_grid_continues_its_oblique_cts_as_stored(tmp_path,
                                                                                             run_before_oblique_grid):
    """Its run trained the oblique CTs on their stored slices: --resume without --oblique-grid continues the same
    run (said in the log, recorded in the package), not silently on the aligned grid."""
    from LiverTumorSegLib.package import read_package_metadata
    from LiverTumorSegLib.training.config import TrainConfig
    from LiverTumorSegLib.training.trainer import train

    values = _copy_of_run_before_oblique_grid(run_before_oblique_grid, tmp_path)
    said = []
    result = train(TrainConfig.from_dict(values), log=said.append)
    assert [line for line in said if "with oblique_grid stored" in line and "before the option existed" in line]
    training = read_package_metadata(result.package_path)["training"]
    assert training["config"]["oblique_grid"] == "stored"
    assert not training.get("cases_on_aligned_grid")


@pytest.mark.parametrize("grid, refused", [("aligned", True), ("stored", False)])
def test_resuming_a_checkpoint_from_before_oblique_grid_with_the_option_given(tmp_path, grid, refused,
                                                                             run_before_oblique_grid):
    """--oblique-grid aligned given: refused as another setting (as every other one is); stored: resumes."""
    from LiverTumorSegLib.package import read_package_metadata
    from LiverTumorSegLib.training.config import TrainConfig
    from LiverTumorSegLib.training.trainer import train

    values = dict(_copy_of_run_before_oblique_grid(run_before_oblique_grid, tmp_path), oblique_grid=grid)
    if refused:
        with pytest.raises(InputError, match=r"other settings: oblique_grid 'stored' \(now 'aligned'\)"):
            train(TrainConfig.from_dict(values), log=lambda text: None)
        return
    result = train(TrainConfig.from_dict(values), log=lambda text: None)
    assert read_package_metadata(result.package_path)["training"]["config"]["oblique_grid"] == "stored"


def _crossval_values(tmp_path):
    """A tiny seeded 2-fold crossval on CTs turned 20 degrees (one patient each)."""
    rows = ["image,label,patient,case"]
    for i in range(2):
        case, _ = _case(tmp_path / "data", 20.0, name=f"t{i}", seed=i)
        rows.append(f"{case.image_path},{case.label_path},p{i},t{i}")
    (tmp_path / "cases.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return dict(
        data=str(tmp_path / "cases.csv"), model="unet", model_options={"channels": [4, 8, 16]},
        preprocessing={"channels": [{"kind": "window", "level": 40, "width": 400}], "context_slices": 1,
                       "target_spacing_mm": 1.5, "size_multiple": 8, "crop_to_body": False},
        epochs=1, iterations_per_epoch=2, batch_size=2, patch_size=32, num_workers=0, schedule="none", folds=2,
        progress_bar=False, tensorboard=False, seed=3)


def _crossval_before_oblique_grid(tmp_path, where):
    """A 2-fold crossval stopped (Ctrl-C) as a version before ``oblique_grid`` left it: ``where`` "package": fold 0
    finished (its package's ``training.config`` without the key, rewritten with its integrity record sealed again,
    and its checkpoints' configs without it), fold 1 not started; "checkpoint": fold 0 interrupted after its first
    step (its checkpoint's config without the key). Returns the run's values and its folder."""
    import torch

    from LiverTumorSegLib.package import rewrite_package_metadata
    from LiverTumorSegLib.training.checkpoint import load_checkpoint, save_checkpoint
    from LiverTumorSegLib.training.config import TrainConfig
    from LiverTumorSegLib.training.crossval import run_crossval
    from LiverTumorSegLib.training.trainer import train

    torch.manual_seed(0)
    torch.set_num_threads(1)
    values = _crossval_values(tmp_path)
    out = tmp_path / "cv"

    class CtrlC:
        def on_step_end(self, info):
            raise KeyboardInterrupt()

    def stopped(fold_cfg, command="", log=print):
        if fold_cfg.fold == 1:
            raise KeyboardInterrupt()
        return train(fold_cfg, command=command, log=log, callbacks=[CtrlC()] if where == "checkpoint" else [])

    with pytest.raises(KeyboardInterrupt):
        run_crossval(TrainConfig.from_dict(values), out, train_fn=stopped, log=lambda text: None)
    if where == "package":
        rewrite_package_metadata(out / "fold_0.safetensors",
                                 lambda meta: meta["training"]["config"].pop("oblique_grid"))
    for last in (out / "fold_0_train" / "checkpoints").glob("*.pt"):  # a finished fold keeps its checkpoints too
        payload = load_checkpoint(last, map_location="cpu")
        saved = json.loads(payload["config"]) if isinstance(payload["config"], str) else dict(payload["config"])
        saved.pop("oblique_grid")
        payload["config"] = json.dumps(saved, sort_keys=True) if isinstance(payload["config"], str) else saved
        save_checkpoint(last, payload)
    return values, out


@pytest.mark.parametrize("where", ["package", "checkpoint"])
def test_crossval_resume_of_a_run_from_before_oblique_grid_trains_every_remaining_fold_stored(tmp_path, where):
    """The interrupted fold continued as stored (the trainer's resume), but folds not started yet trained aligned:
    one cross-validation mixed two grids. Now every fold of the resumed run trains stored, said in one line."""
    from LiverTumorSegLib.package import read_package_metadata
    from LiverTumorSegLib.training.config import TrainConfig
    from LiverTumorSegLib.training.crossval import run_crossval

    values, out = _crossval_before_oblique_grid(tmp_path, where)
    said = []
    table = run_crossval(TrainConfig.from_dict(dict(values, resume=True)), out, log=said.append)
    assert [row["fold"] for row in table] == [0, 1, "mean"]
    lines = [line for line in said if "with oblique_grid stored" in line and "before the option existed" in line]
    assert len(lines) == 1, said
    for fold in range(2):
        training = read_package_metadata(out / f"fold_{fold}.safetensors")["training"]
        if fold == 1 or where == "checkpoint":  # trained by this run (the faked fold 0 package was trained aligned)
            assert training["config"]["oblique_grid"] == "stored", fold
            assert not training.get("cases_on_aligned_grid"), fold


@pytest.mark.parametrize("grid, refused", [("aligned", True), ("stored", False)])
def test_crossval_resume_of_a_run_from_before_oblique_grid_with_the_option_given(tmp_path, grid, refused):
    """--oblique-grid aligned given: refused as another setting before any fold trains; stored: resumes."""
    from LiverTumorSegLib.package import read_package_metadata
    from LiverTumorSegLib.training.config import TrainConfig
    from LiverTumorSegLib.training.crossval import run_crossval

    values, out = _crossval_before_oblique_grid(tmp_path, "package")
    config = TrainConfig.from_dict(dict(values, resume=True, oblique_grid=grid))
    if refused:
        with pytest.raises(InputError, match=r"fold_0.safetensors' is from a run with other settings: oblique_grid "
                                             r"'stored' \(now 'aligned'\): it was written before --oblique-grid "
                                             r"existed"):
            run_crossval(config, out, log=lambda text: None)
        assert not (out / "fold_1.safetensors").exists()
        return
    run_crossval(config, out, log=lambda text: None)
    assert read_package_metadata(out / "fold_1.safetensors")["training"]["config"]["oblique_grid"] == "stored"


def test_a_second_crossval_resume_of_a_run_from_before_oblique_grid_still_trains_stored(tmp_path):
    """The first resume trained fold 1 stored and was interrupted in it (its checkpoint records "stored"): the
    second resume (the same command) must continue fold 1 stored. It saw a saved config holding the key and gave up
    on the run's grid: fold 1's checkpoint was taken for a replaced run's, fold 1 trained again from scratch on
    the aligned grid, beside fold 0 trained stored."""
    import torch

    from LiverTumorSegLib.package import read_package_metadata
    from LiverTumorSegLib.training.config import TrainConfig
    from LiverTumorSegLib.training.crossval import run_crossval
    from LiverTumorSegLib.training.trainer import train

    values, out = _crossval_before_oblique_grid(tmp_path, "package")
    torch.manual_seed(0)

    class CtrlC:
        def on_step_end(self, info):
            raise KeyboardInterrupt()

    def stopped(fold_cfg, command="", log=print, callbacks=()):
        return train(fold_cfg, command=command, log=log, callbacks=[CtrlC()])

    with pytest.raises(KeyboardInterrupt):  # the first resume: fold 1 (stored) stopped after its first step
        run_crossval(TrainConfig.from_dict(dict(values, resume=True)), out, train_fn=stopped, log=lambda text: None)
    assert not (out / "fold_1.safetensors").exists() and (out / "fold_1_train" / "checkpoints" / "last.pt").is_file()
    said = []
    run_crossval(TrainConfig.from_dict(dict(values, resume=True)), out, log=said.append)
    assert not [line for line in said if "training it again from scratch" in line], said
    assert len([line for line in said if "with oblique_grid stored" in line]) == 1, said
    training = read_package_metadata(out / "fold_1.safetensors")["training"]
    assert training["config"]["oblique_grid"] == "stored"
    assert not training.get("cases_on_aligned_grid")


def test_a_second_train_resume_of_a_run_from_before_oblique_grid_continues_stored(tmp_path, run_before_oblique_grid):
    """The first resume continued stored and was stopped again (its checkpoint's config now holds "stored"): the
    same command again must continue stored. It was refused: 'other settings: oblique_grid 'stored' (now
    'aligned'). Resume with the interrupted run's settings', which the user had typed."""
    from LiverTumorSegLib.package import read_package_metadata
    from LiverTumorSegLib.training.config import TrainConfig
    from LiverTumorSegLib.training.trainer import train

    values = dict(_copy_of_run_before_oblique_grid(run_before_oblique_grid, tmp_path), epochs=3)

    class CtrlC:
        def on_step_end(self, info):
            raise KeyboardInterrupt()

    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig.from_dict(values), log=lambda text: None, callbacks=[CtrlC()])
    said = []
    result = train(TrainConfig.from_dict(values), log=said.append)
    assert [line for line in said if "with oblique_grid stored" in line and "before the option existed" in line]
    training = read_package_metadata(result.package_path)["training"]
    assert training["config"]["oblique_grid"] == "stored" and not training.get("cases_on_aligned_grid")


def test_a_resume_of_a_run_started_with_the_option_is_not_taken_for_one_from_before_it(tmp_path,
                                                                                      run_before_oblique_grid):
    """A run started with --oblique-grid stored records it as any option: resumed without it, refused as before."""
    from LiverTumorSegLib.training.config import TrainConfig
    from LiverTumorSegLib.training.trainer import train

    values = dict(_copy_of_run_before_oblique_grid(run_before_oblique_grid, tmp_path), resume=False, overwrite=True,
                  oblique_grid="stored", epochs=3)

    class CtrlC:
        def on_step_end(self, info):
            raise KeyboardInterrupt()

    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig.from_dict(values), log=lambda text: None, callbacks=[CtrlC()])
    values = dict(values, resume=True, overwrite=False)
    values.pop("oblique_grid")
    with pytest.raises(InputError, match=r"other settings: oblique_grid 'stored' \(now 'aligned'\)"):
        train(TrainConfig.from_dict(values), log=lambda text: None)


def test_crossval_resume_retrains_a_fold_package_from_before_oblique_grid_beside_folds_of_this_run(tmp_path):
    """Fold 0 of this (aligned) run finished; fold 1 held a package from before ``oblique_grid`` (left by the run an
    interrupted ``--overwrite`` of an older version was replacing). Its missing key was compared as this run's
    ungiven "aligned", so the resume took it as this run's fold 1: one table of two grids. It is compared as the
    "stored" it was trained with now, and the fold is trained again."""
    import torch

    from LiverTumorSegLib.package import read_package_metadata, rewrite_package_metadata
    from LiverTumorSegLib.training.config import TrainConfig
    from LiverTumorSegLib.training.crossval import run_crossval

    torch.manual_seed(0)
    torch.set_num_threads(1)
    values = _crossval_values(tmp_path)
    out = tmp_path / "cv"
    run_crossval(TrainConfig.from_dict(values), out, log=lambda text: None)
    rewrite_package_metadata(out / "fold_1.safetensors", lambda meta: meta["training"]["config"].pop("oblique_grid"))
    for last in (out / "fold_1_train" / "checkpoints").glob("*.pt"):
        last.unlink()
    said = []
    run_crossval(TrainConfig.from_dict(dict(values, resume=True)), out, log=said.append)
    assert not [line for line in said if "fold 1 already finished" in line], said
    assert [line for line in said if "fold 1: " in line and "oblique_grid 'stored' (now 'aligned')" in line
            and "training it again from scratch" in line], said
    assert read_package_metadata(out / "fold_1.safetensors")["training"]["config"]["oblique_grid"] == "aligned"


def test_given_survives_replace_and_a_stored_config_marks_nothing_given(tmp_path):
    """``TrainConfig.given`` (the options the user set) was lost by ``dataclasses.replace``: a recipe asking for
    ``oblique_grid: aligned``, given ``resume=True`` by replace, resumed a run from before the option on its stored
    grid without a refusal. ``from_json`` (a checkpoint's stored config) marked every option given: its recorded
    "aligned", asked for by nobody, refused that resume. Both are checked where crossval settles the grid."""
    import dataclasses

    from LiverTumorSegLib.training.crossval import resumed_oblique_grid
    from LiverTumorSegLib.training.config import TrainConfig

    recipe = TrainConfig.from_dict({"oblique_grid": "aligned", "lr": 0.01})
    assert dataclasses.replace(recipe, resume=True).given == {"oblique_grid", "lr"}
    stored = TrainConfig.from_json(recipe.to_json())
    assert stored == recipe and stored.given == frozenset()
    assert TrainConfig.from_json(recipe.to_json(), given=recipe.given).given == recipe.given
    assert TrainConfig(oblique_grid="aligned", lr=0.01).given == {"oblique_grid", "lr"}
    assert TrainConfig().given == frozenset() and TrainConfig.from_dict({}).given == frozenset()
    assert "given" not in recipe.to_dict() and "given" not in TrainConfig.field_names()
    with pytest.raises(InputError, match="Unknown training option"):
        TrainConfig.from_dict({"given": ["lr"]})

    values, out = _crossval_before_oblique_grid(tmp_path, "package")
    asked = TrainConfig.from_dict(dict(values, oblique_grid="aligned"))
    with pytest.raises(InputError, match=r"other settings: oblique_grid 'stored' \(now 'aligned'\)"):
        resumed_oblique_grid(dataclasses.replace(asked, resume=True), out, log=lambda text: None)
    said = []
    settled = resumed_oblique_grid(TrainConfig.from_json(asked.to_json()).updated({"resume": True}), out, said.append)
    assert settled.oblique_grid == "stored" and len(said) == 1


def test_the_command_line_has_no_option_for_the_given_bookkeeping():
    from LiverTumorSegLib.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--given", "lr"])


def test_the_network_input_inside_the_footprint_is_training_s_with_the_body_crop(tmp_path, monkeypatch):
    """``segment`` gives the network only boxes of the aligned grid (footprint runs), each body-cropped and padded on
    its own; training caches whole aligned slices, body-cropped over all of them. Inside the CT's footprint, every
    2.5D network input value (channels, context slices) of the runs equals training's for the same aligned voxel
    (measured on an 8 x 256 x 256 phantom turned 30 degrees, default preset: 4.6 million values, none apart)."""
    from types import SimpleNamespace

    from LiverTumorSegLib.inference import SegmentationOptions
    from LiverTumorSegLib.inference.segmenter import Segmenter
    from LiverTumorSegLib.training.sampling import full_slice_inputs

    monkeypatch.setattr(axis_aligned, "FOOTPRINT_MARGIN_PIXELS", 3)  # boxes within the slices: the runs' path
    case, phantom = _case(tmp_path / "data", 30.0)
    preprocessor = SlicePreprocessor(_config(crop_to_body=True, crop_margin_mm=3.0,
                                             channels=[{"kind": "window", "level": 40.0, "width": 400.0},
                                                       {"kind": "window", "level": 0.0, "width": 2000.0}]))
    (cached,) = build_slice_cache([case], preprocessor, tmp_path / "cache")
    trained = full_slice_inputs(cached, preprocessor, range(cached.num_slices))
    ct = phantom.ct
    engine = SimpleNamespace(preprocessing=preprocessor.config, package=SimpleNamespace(metadata={}))
    segmenter = Segmenter(SegmentationOptions(), engine=engine)
    grid = segmenter._aligned_grid(ct)
    grid_ct = axis_aligned.resampled_onto(ct, grid)
    train_info = preprocessor.plan(grid_ct.array, grid_ct.spacing_zyx)  # the cached grid (the tests above)
    assert tuple(cached.hu.shape[1:]) == tuple(train_info.net_shape_yx)
    runs = segmenter._footprint_runs(grid_ct, ct)
    assert runs is not None and len(runs) > 1
    inside = axis_aligned.footprint(grid.geometry, grid.shape_zyx, ct.geometry, ct.shape_zyx)
    compared = 0
    for run in runs:
        part = canonicalize(axis_aligned.run_volume(grid_ct, run))[0]
        prepared = preprocessor.prepare(part)
        kept = range(run.kept_in_read.start, run.kept_in_read.stop)
        given = prepared.batch(list(kept))
        info = prepared.info
        assert not info.is_resampled and not train_info.is_resampled
        for k, z in enumerate(range(*run.slices)):
            ys, xs = np.nonzero(inside[z])
            ry, rx = ys - run.rows[0], xs - run.columns[0]
            within = ((ry >= info.crop_yx[0]) & (ry < info.crop_yx[1]) & (rx >= info.crop_yx[2])
                      & (rx < info.crop_yx[3]) & (ys >= train_info.crop_yx[0]) & (ys < train_info.crop_yx[1])
                      & (xs >= train_info.crop_yx[2]) & (xs < train_info.crop_yx[3]))
            ys, xs, ry, rx = ys[within], xs[within], ry[within], rx[within]
            run_values = given[k][:, ry - info.crop_yx[0] + info.pad_yx[0], rx - info.crop_yx[2] + info.pad_yx[2]]
            train_values = trained[z][:, ys - train_info.crop_yx[0] + train_info.pad_yx[0],
                                      xs - train_info.crop_yx[2] + train_info.pad_yx[2]]
            np.testing.assert_allclose(run_values, train_values, atol=1e-5)
            compared += run_values.size
    assert compared > 0.9 * int(np.count_nonzero(inside)) * trained.shape[1]
