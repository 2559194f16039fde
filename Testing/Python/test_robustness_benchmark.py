"""benchmarks/robustness.py: perturbations with known answers, an oracle run whose scores are known, and the
CLI on a tiny generated case with a tiny package (table stored in the package and shown by ``models``)."""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference_helpers import oracle_package, oracle_predictor, tiny_unet_package  # noqa: E402
from script_helpers import load_script  # noqa: E402

from LiverTumorSegLib.phantom import make_phantom  # noqa: E402
from LiverTumorSegLib.training.synthetic_lesions import LesionConfig  # noqa: E402

rb = load_script("benchmarks/robustness.py", "robustness_bench")


def write_case(folder: Path, stem: str = "case1_ct", shape=(16, 48, 48), spacing=(3.0, 3.0, 2.5)):
    """A noise-free tumor-free phantom as ``<stem>.nii.gz`` + ``<stem minus _ct>_liver_seg.nii.gz``."""
    from LiverTumorSegLib.io import write_label_map, write_volume

    phantom = make_phantom(shape, spacing, lesions=[], noise_hu=0.0)
    folder.mkdir(parents=True, exist_ok=True)
    write_volume(folder / f"{stem}.nii.gz", phantom.ct)
    label_stem = stem[:-3] if stem.endswith("_ct") else stem
    write_label_map(folder / f"{label_stem}_liver_seg.nii.gz", phantom.labels, phantom.ct.geometry)
    return phantom


def sample_with_liver(z_slices=(4, 8), nz=20, spacing=(2.0, 1.0, 1.0)):
    hu = np.zeros((nz, 8, 8), dtype=np.float32)
    labels = np.zeros((nz, 8, 8), dtype=np.uint8)
    labels[z_slices[0]:z_slices[1], 2:6, 2:6] = 1
    return rb.Sample(hu, labels, spacing, spacing)


def test_pairing_rule_finds_image_label_pairs(tmp_path):
    write_case(tmp_path / "a", "ct3slice_ct")
    write_case(tmp_path / "b", "example_ct_sm")
    (tmp_path / "b" / "example_ct_sm_ts117labels.nii.gz").write_bytes(b"not used")
    cases = rb.find_cases(tmp_path)
    assert [c.case_id for c in cases] == ["ct3slice_ct", "example_ct_sm"]
    assert cases[0].label_path.endswith("ct3slice_liver_seg.nii.gz")
    assert cases[1].label_path.endswith("example_ct_sm_liver_seg.nii.gz")


def test_spacing_perturbation_changes_only_the_told_spacing():
    s = sample_with_liver()
    out = rb.scale_spacing(s, 1.3)
    assert out.spacing_zyx == pytest.approx((2.0, 1.3, 1.3))
    assert out.true_spacing_zyx == (2.0, 1.0, 1.0)
    assert out.hu is s.hu and out.labels is s.labels


def test_no_body_size_scaling_help_names_every_spacing_row_the_scaling_acts_on(capsys):
    """Body-size scaling enlarges a body shown under SMALL_FRACTION (0.75) x the smallest training body: spacing-30
    (0.70x) too, not only -40..-60 as the help said (measured: the 20-slice CT's 324.6 mm body at 0.70x is 227 mm,
    in_plane_scale 1.286), so a reader took the spacing-30 row for what the network saw at 0.70x."""
    from LiverTumorSegLib.inference.body_size import SMALL_FRACTION

    shrunk = sorted((1.0 - int(name.split("-")[1]) / 100.0, name) for name in rb.PERTURBATIONS
                    if name.startswith("spacing-"))
    acted_on = [name for factor, name in shrunk if factor < SMALL_FRACTION]
    with pytest.raises(SystemExit):
        rb.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    mildest = acted_on[-1]  # the largest factor under the threshold: the range named starts there
    assert f"the {mildest}..-{acted_on[0].split('-')[1]} rows are where it acts" in text


def test_thick_slices_average_overlapping_slabs():
    s = sample_with_liver(z_slices=(2, 6), nz=10, spacing=(2.0, 1.0, 1.0))   # 20 mm -> 4 slabs of 5 mm
    s.hu[:] = np.arange(10, dtype=np.float32)[:, None, None]
    out = rb.thick_slices(s, 5.0)
    assert out.hu.shape[0] == 4 and out.spacing_zyx[0] == 5.0
    # slab 0 covers 0-5 mm: slices 0 (2 mm), 1 (2 mm), 2 (1 mm) -> (0*2 + 1*2 + 2*1) / 5 = 0.8
    assert out.hu[0, 0, 0] == pytest.approx(0.8, abs=1e-5)
    # slab 1 covers 5-10 mm: slice 2 (1 mm), 3 (2 mm), 4 (2 mm) -> (2 + 6 + 8) / 5 = 3.2
    assert out.hu[1, 0, 0] == pytest.approx(3.2, abs=1e-5)
    assert out.labels[1].max() == 1 and out.labels[3].max() == 0   # centres at 7.5 mm (slice 3), 17.5 (slice 8)
    assert rb.thick_slices(rb.Sample(s.hu[:2], s.labels[:2], s.spacing_zyx, s.spacing_zyx), 5.0) is None


def test_thick_slab_labels_lie_where_the_averaged_image_shows_the_liver():
    """On 2.5 mm slices a 5 mm slab's centre is a slice boundary, and the label of the upper slice was taken: the
    label lay half a slice (1.25 mm) from the averaged image (the audit's case). The label holding most of the slab
    is taken now, a tie (half liver) going to the liver at both ends alike."""
    nz, sz = 80, 2.5
    centres = (np.arange(nz) + 0.5) * sz
    labels = np.zeros((nz, 4, 4), np.uint8)
    labels[(centres > 52) & (centres < 148)] = 1  # slices 21..58: 52.5..147.5 mm
    out = rb.thick_slices(rb.Sample(labels * 100.0, labels, (sz, 1.0, 1.0), (sz, 1.0, 1.0)), 5.0)
    liver_slabs = np.flatnonzero(out.labels[:, 0, 0])
    assert liver_slabs.tolist() == list(range(10, 30))  # slabs 10 and 29 are half liver (HU 50): both liver
    assert out.hu[10, 0, 0] == pytest.approx(50.0) and out.hu[29, 0, 0] == pytest.approx(50.0)
    image_centre = float((out.hu[:, 0, 0] * np.arange(out.hu.shape[0])).sum() / out.hu[:, 0, 0].sum())
    assert liver_slabs.mean() == pytest.approx(image_centre, abs=1e-6)  # no shift between label and image
    # three of five 1 mm slices tumor, two liver: tumor; a voxel mostly background stays background
    thin = np.zeros((5, 1, 2), np.uint8)
    thin[:3, 0, 0], thin[3:, 0, 0] = 2, 1
    thin[:2, 0, 1] = 1
    assert rb.slab_majority_label(thin, np.ones(5)).tolist() == [[2, 0]]


def test_thin_slices_interpolate_between_slice_centres():
    s = sample_with_liver(z_slices=(2, 6), nz=10, spacing=(2.0, 1.0, 1.0))   # 20 mm -> 40 slices of 0.5 mm
    s.hu[:] = (10.0 * np.arange(10, dtype=np.float32))[:, None, None]
    out = rb.thin_slices(s, 0.5)
    assert out.hu.shape == (40, 8, 8) and out.spacing_zyx == (0.5, 1.0, 1.0) and out.true_spacing_zyx[0] == 0.5
    # new slice j's centre is at (j + 0.5) x 0.5 mm; the old slice centres at 1, 3, 5 ... mm hold 0, 10, 20 ...
    # j = 0 (0.25 mm, before the first centre: held at 0), 1 (0.75: 0), 2 (1.25 mm: 1.25 between 0 at 1 mm and 10 at
    # 3 mm), 5 (2.75 mm: 8.75), 39 (19.75 mm, past the last centre at 19 mm: held at 90)
    np.testing.assert_allclose(out.hu[[0, 1, 2, 5, 39], 0, 0], [0.0, 0.0, 1.25, 8.75, 90.0], atol=1e-5)
    # labels: the old slice holding the new slice's centre (old slices 2..5 = 4..12 mm -> new slices 8..23)
    assert [j for j in range(40) if out.labels[j].max() == 1] == list(range(8, 24))
    assert rb.thin_slices(rb.Sample(s.hu, s.labels, (1.0, 1.0, 1.0), (1.0, 1.0, 1.0)), 0.75) is None  # < 1.5x


def test_field_of_view_crop_to_liver_margin():
    s = sample_with_liver(z_slices=(8, 12), nz=30, spacing=(2.0, 1.0, 1.0))
    out = rb.crop_to_liver(s, 4.0)          # 2 slices each side
    assert out.hu.shape[0] == 8 and out.labels[2:6].max() == 1 and out.labels[:2].max() == 0
    assert rb.crop_to_liver(s, 100.0) is None  # the whole scan already


def test_air_padding_adds_unlabelled_air_slices_on_both_sides():
    s = sample_with_liver(nz=12)
    out = rb.pad_with_air(s, 15)
    assert out.hu.shape[0] == 42 and (out.hu[:15] == -1000).all() and (out.hu[-15:] == -1000).all()
    assert not out.labels[:15].any() and not out.labels[-15:].any()
    np.testing.assert_array_equal(out.labels[15:27], s.labels)
    assert out.spacing_zyx == s.spacing_zyx


def test_the_air_step_can_be_turned_off_for_a_comparison_but_not_stored(tmp_path, capsys):
    package = tiny_unet_package(tmp_path)
    before = package.path.read_bytes()
    assert rb.main([str(package.path), "--data", str(tmp_path), "--store-in-package", "--keep-liver-in-air"]) == 2
    assert "--keep-liver-in-air" in capsys.readouterr().err and package.path.read_bytes() == before
    write_case(tmp_path / "data")
    out_json = tmp_path / "rob.json"
    assert rb.main([str(package.path), "--data", str(tmp_path / "data"), "--json", str(out_json),
                    "--keep-liver-in-air", "--perturbations", "air_pad15", "--threads", "1", "--quiet"]) == 0
    assert json.loads(out_json.read_text())["keep_liver_in_air"] is True
    assert "air step off" in capsys.readouterr().out


def test_scan_end_row_cuts_the_scan_at_the_widest_tumor_slice_keeping_the_longer_side():
    s = sample_with_liver(z_slices=(2, 18), nz=20)
    s.hu[:] = np.arange(20, dtype=np.float32)[:, None, None]  # each slice's HU is its z index
    s.labels[5:9, 3:5, 3:5] = 2
    s.labels[7, 2:6, 2:6] = 2                               # widest tumor slice: z = 7 (16 voxels against 4)
    out = rb.cut_at_widest_tumor(s)
    assert out.hu.shape[0] == 13 and out.hu[0, 0, 0] == 7.0 and out.hu[-1, 0, 0] == 19.0  # 7..19: the longer side
    assert (out.labels[0] == 2).sum() == 16 and out.spacing_zyx == s.spacing_zyx
    s.labels[:] = np.where(s.labels == 2, 1, s.labels)
    s.labels[15, 2:6, 2:6] = 2                              # near the top: the scan ends on it, slices 0..15 kept
    out = rb.cut_at_widest_tumor(s)
    assert out.hu.shape[0] == 16 and out.hu[-1, 0, 0] == 15.0 and (out.labels[-1] == 2).sum() == 16
    s.labels[15] = np.where(s.labels[15] == 2, 1, s.labels[15])
    assert rb.cut_at_widest_tumor(s) is None                # no tumor
    s.labels[19, 2:6, 2:6] = 2
    assert rb.cut_at_widest_tumor(s) is None                # already the scan's last slice
    assert "scan's end" in rb.skip_reason("scan_end_tumor")


def test_liver_hu_shift_moves_liver_not_background():
    s = sample_with_liver(nz=12)
    out = rb.shift_liver_hu(s, 40.0)
    assert out.hu[6, 4, 4] == pytest.approx(40.0) and out.hu[6, 0, 0] == 0.0
    noisy = rb.add_noise(s, 25.0, seed=3)
    assert 22.0 < float(noisy.hu.std()) < 28.0


def test_oracle_scores_are_the_known_answers(tmp_path):
    """The oracle predictor thresholds HU (liver 55-65, tumor 10-30): spacing is irrelevant to it, a +40 HU
    liver leaves its liver band and 25 HU noise scatters the liver out of its 10 HU band."""
    from LiverTumorSegLib.inference.engine import SliceInferenceEngine

    write_case(tmp_path)
    lesions = LesionConfig(probability=1.0, count_range=(2, 2), diameter_range_mm=(14.0, 16.0),
                           hypodense_probability=1.0, hypo_contrast_hu=(40.0, 40.0), heterogeneity_hu=(0.0, 0.0),
                           irregularity_range=(0.0, 0.0), anchor="any", edge_probability=0.0, cluster_probability=0.0)
    case = rb.load_bench_case(rb.find_cases(tmp_path)[0], seed=0, lesions=lesions)
    assert (case.sample.labels == 2).sum() > 50 and (case.original.labels == 2).sum() == 0
    engine = SliceInferenceEngine(oracle_package(), device="cpu", batch_predictor=oracle_predictor)
    names = ["original", "baseline", "spacing-30", "spacing+30", "liver_hu+40", "noise25"]
    rows = {r["perturbation"]: r for r in rb.evaluate(engine, [case], names, seed=0)}
    assert rows["original"]["liver_dice"] > 0.99 and rows["original"]["tumor_dice"] is None
    assert rows["baseline"]["liver_dice"] > 0.97 and rows["baseline"]["tumor_dice"] > 0.6
    assert rows["baseline"]["true_lesions"] >= 1 and rows["baseline"]["detected_lesions"] == rows["baseline"]["true_lesions"]
    for name in ("spacing-30", "spacing+30"):
        assert abs(rows[name]["liver_dice"] - rows["baseline"]["liver_dice"]) < 0.02
    assert rows["liver_hu+40"]["liver_dice"] < 0.5
    assert rows["noise25"]["liver_dice"] < 0.7


def test_cli_runs_stores_in_package_and_models_shows_it(tmp_path, monkeypatch, capsys):
    import torch

    torch.manual_seed(0)
    write_case(tmp_path / "data")
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    package = tiny_unet_package(models_dir)
    sha = package.sha256
    out_json = tmp_path / "rob.json"
    code = rb.main([str(package.path), "--data", str(tmp_path / "data"), "--json", str(out_json),
                    "--store-in-package", "--perturbations", "original,baseline,spacing+30,thick5mm",
                    "--threads", "1", "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "spacing+30" in printed and "invariance" in printed
    document = json.loads(out_json.read_text())
    rows = document["packages"][0]["rows"]
    assert [r["perturbation"] for r in rows] == ["original", "baseline", "spacing+30", "thick5mm"]
    for row in rows:
        assert all(not isinstance(v, (dict, list)) for v in row.values())
        assert row["liver_dice"] is None or 0.0 <= row["liver_dice"] <= 1.0

    from LiverTumorSegLib.commands import models as models_cmd
    from LiverTumorSegLib.package import load_model_package, metadata_sha256, read_package_metadata

    stored = read_package_metadata(package.path)
    assert stored["robustness"] == rows
    assert stored["metadata_sha256"] == metadata_sha256(stored)  # resealed: the new table is part of the hash
    assert load_model_package(package.path).sha256 == sha     # weights untouched
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(models_dir))
    models_cmd.run(argparse.Namespace(json=False))
    text = capsys.readouterr().out
    assert "robustness" in text and "spacing+30" in text
    models_cmd.run(argparse.Namespace(json=True))
    listed = [e for e in json.loads(capsys.readouterr().out)["installed"] if e["path"] == str(package.path)]
    assert listed and listed[0]["robustness"] == rows
    settings = stored["robustness_settings"]                   # how the table was made, stored beside it
    assert settings["cases"] == ["case1_ct"] and settings["perturbations"] == [r["perturbation"] for r in rows]
    assert settings["seed"] == 0 and settings["postprocessing"]["min_lesion_probability"] == 0.65
    # a quick check run would replace the stored table by fewer rows: refused before any work
    assert rb.main([str(package.path), "--data", str(tmp_path / "data"), "--store-in-package",
                    "--perturbations", "baseline", "--threads", "1", "--quiet"]) == 2
    assert "--replace-stored" in capsys.readouterr().err
    assert read_package_metadata(package.path)["robustness"] == rows


def test_summary_gives_case_counts_and_the_change_on_the_same_cases():
    # thick5mm applied to one case of two: its mean is over that case only, the change is paired
    rows = [{"case": "a", "perturbation": "baseline", "liver_dice": 0.98, "tumor_dice": 0.80},
            {"case": "b", "perturbation": "baseline", "liver_dice": 0.96, "tumor_dice": 0.60},
            {"case": "b", "perturbation": "thick5mm", "liver_dice": 0.95, "tumor_dice": 0.59, "false_lesions": 2}]
    assert rb.paired_change(rows, "thick5mm", "tumor_dice") == pytest.approx(-0.01)
    line = [t for t in rb.summary_table(rows, ["baseline", "thick5mm"]).splitlines() if t.strip().startswith("thick")]
    assert line and line[0].split()[-5:] == ["1", "2", "-0.010", "/", "-0.010"]  # cases, false lesions, change


def test_summary_columns_line_up_under_long_perturbation_names():
    """perihepatic_fluid (17 characters) ran into the first case's cell: its line's columns sat 4 characters right of
    the header's and of the other lines'."""
    names = ["baseline", "perihepatic_fluid", "large_confluent"]
    rows = [{"case": "a", "perturbation": n, "liver_dice": 0.98, "tumor_dice": 0.8} for n in names]
    lines = rb.summary_table(rows, names).splitlines()
    case_column = lines[0].index(" a ") + 1  # the case's name, right-aligned over its cells
    assert [line.index("0.980/0.800") + len("0.980/0.800") - 1 for line in lines[2:]] == [case_column] * 3


def test_cases_with_the_same_file_name_keep_apart(tmp_path):
    # patient01/ct.nii.gz and patient02/ct.nii.gz both had the id "ct": one lesion seed, one column in the summary
    write_case(tmp_path / "patient01", "ct_ct")
    write_case(tmp_path / "patient02", "ct_ct")
    ids = [c.case_id for c in rb.find_cases(tmp_path)]
    assert ids == ["patient01/ct_ct", "patient02/ct_ct"]


def test_cli_rejects_unknown_perturbation(tmp_path, capsys):
    write_case(tmp_path)
    assert rb.main(["default", "--data", str(tmp_path), "--perturbations", "zoom9"]) == 2
    assert "error: Unknown perturbation" in capsys.readouterr().err


def _run_with_engine_spy(tmp_path, monkeypatch, *options):
    """The CLI on one generated case with a tiny package and ``options``, ``make_engine``'s keyword arguments
    recorded: ``(a list of their dicts, the --json document)``."""
    import torch

    from LiverTumorSegLib.inference import api

    torch.manual_seed(0)
    write_case(tmp_path / "data")
    package = tiny_unet_package(tmp_path)
    made = []
    real = api.make_engine

    def recording(*args, **kwargs):
        made.append(kwargs)
        return real(*args, **kwargs)
    monkeypatch.setattr(api, "make_engine", recording)
    out_json = tmp_path / "rob.json"
    assert rb.main([str(package.path), "--data", str(tmp_path / "data"), "--json", str(out_json), *options,
                    "--perturbations", "baseline", "--threads", "1", "--quiet"]) == 0
    return made, json.loads(out_json.read_text())


def test_cli_tta_reaches_the_engine_and_the_json(tmp_path, monkeypatch, capsys):
    made, document = _run_with_engine_spy(tmp_path, monkeypatch, "--tta")
    assert [m.get("tta_flip") for m in made] == [True] and document["tta"] is True
    assert "test-time augmentation" in capsys.readouterr().out


def test_cli_does_not_store_a_tta_or_raw_table_in_the_package(tmp_path, capsys):
    package = tiny_unet_package(tmp_path)
    before = package.path.read_bytes()
    for flag in ("--tta", "--no-postprocessing"):
        assert rb.main([str(package.path), "--data", str(tmp_path), "--store-in-package", flag]) == 2
        assert "--store-in-package stores the table of the default inference" in capsys.readouterr().err
    assert package.path.read_bytes() == before


def test_regrid_degrees_turns_the_regrid_rows_is_recorded_and_is_never_stored(tmp_path, capsys, monkeypatch):
    """--regrid-degrees measures what a smaller obliquity costs (the regrid rows were fixed at 30 degrees)."""
    package = tiny_unet_package(tmp_path)
    before = package.path.read_bytes()
    for bad in ("0", "50"):
        assert rb.main([str(package.path), "--data", str(tmp_path), "--regrid-degrees", bad]) == 2
        assert "--regrid-degrees must be above 0 and at most 45" in capsys.readouterr().err
    assert rb.main([str(package.path), "--data", str(tmp_path), "--store-in-package", "--regrid-degrees", "10"]) == 2
    assert "without --regrid-degrees" in capsys.readouterr().err and package.path.read_bytes() == before
    monkeypatch.setattr(rb, "REGRID_DEGREES_USED", rb.REGRID_DEGREES)  # restored after the test
    turned = []
    real = rb.regrid_tilted
    monkeypatch.setattr(rb, "regrid_tilted", lambda sample, degrees, fill: turned.append(degrees) or
                        real(sample, degrees, fill))
    write_case(tmp_path / "data")
    out_json = tmp_path / "rob.json"
    assert rb.main([str(package.path), "--data", str(tmp_path / "data"), "--json", str(out_json), "--regrid-degrees",
                    "10", "--perturbations", "regrid_fill-1024", "--threads", "1", "--quiet"]) == 0
    document = json.loads(out_json.read_text())
    assert turned and set(turned) == {10.0} and document["regrid_degrees"] == 10.0
    # the row's description said 'turned 30 degrees' of rows turned 10
    assert document["perturbations"]["regrid_fill-1024"] == ("resampled onto a grid turned 10 degrees about "
                                                             "left-right, fill -1024 HU")


def test_replace_stored_without_store_in_package_is_refused(tmp_path, capsys, monkeypatch):
    """--replace-stored alone ran the whole benchmark, exit 0, and stored (and replaced) nothing without a word."""
    package = tiny_unet_package(tmp_path)
    write_case(tmp_path / "data")
    monkeypatch.setattr(rb, "evaluate", lambda *a, **k: pytest.fail("ran before the refusal"))
    before = package.path.read_bytes()
    assert rb.main([str(package.path), "--data", str(tmp_path / "data"), "--quiet", "--replace-stored"]) == 2
    assert "--replace-stored says what --store-in-package may replace" in capsys.readouterr().err
    assert package.path.read_bytes() == before


def test_a_validation_only_case_is_named_as_such():
    # a leave-one-patient-out fold's held-out patient is its validation case: the table flags it (it chose the
    # best epoch) and says it was not trained on, instead of calling it a training case
    metadata = {"training": {"cases": ["a", "b"], "patients": ["pa", "pb"], "validation_cases": ["c", "a"]}}
    assert rb.validation_only_names(metadata) == {"c"}
    assert rb.validation_only_names({"training": {"validation_cases": "c"}}) == set()  # not a list: ignored
    assert rb.validation_only_names({}) == set()
    # a second scan of a training patient is not unseen, whatever its case name
    assert rb.validation_only_names(metadata, {"c": "pa"}) == set()
    assert rb.validation_only_names(metadata, {"c": "pc"}) == {"c"}


def test_a_training_ct_under_another_name_is_flagged_by_its_voxels(tmp_path, capsys, monkeypatch):
    """The table flagged training cases by case name only: a training CT saved under another name (or in another
    file format) was scored as if unseen. A package that records its scans' voxel digests (training.data_files)
    has it flagged by content; one that records none says that only names were compared (and no CT's digest is
    taken for it: 0.2 s per 100 slices for nothing)."""
    from LiverTumorSegLib.models import build_model
    from LiverTumorSegLib.package import save_model_package
    from LiverTumorSegLib.training import datasets
    from LiverTumorSegLib.training.datasets import load_case, voxel_digest

    write_case(tmp_path / "data", "renamed_ct")
    write_case(tmp_path / "data", "other_ct", shape=(18, 48, 48))
    found = {c.case_id: c for c in rb.find_cases(tmp_path / "data")}
    digest = voxel_digest(load_case(found["renamed_ct"])[0].array)
    package = tiny_unet_package(tmp_path)
    model = build_model("unet", in_channels=1, num_classes=3, channels=(4, 8, 16), strides=(2, 2))
    model.load_state_dict(package.model.state_dict())
    for name, files in (("digests.safetensors", [{"case": "train7", "voxel_sha256": digest}]),
                        ("names.safetensors", [{"case": "renamed_ct"}])):
        path = save_model_package(tmp_path / name, model, package.preprocessing, metadata={
            "name": name, "training": {"cases": ["train7" if "voxel_sha256" in files[0] else "renamed_ct"],
                                       "patients": [], "data_files": files}})
        out = tmp_path / f"{name}.json"
        taken = []
        monkeypatch.setattr(datasets, "voxel_digest", lambda array: taken.append(1) or voxel_digest(array))
        assert rb.main([str(path), "--data", str(tmp_path / "data"), "--json", str(out), "--perturbations",
                        "baseline", "--threads", "1", "--quiet"]) == 0
        assert len(taken) == (2 if "voxel_sha256" in files[0] else 0), name
        rows = {r["case"]: r["training_case"] for r in json.loads(out.read_text())["packages"][0]["rows"]}
        assert rows == {"renamed_ct": True, "other_ct": False}, (name, rows)
        printed = capsys.readouterr().out
        if "voxel_sha256" in files[0]:
            assert "by the voxel digests the package records" in printed
        else:
            assert "records no voxel digests" in printed and "a copy under another name is not caught" in printed
    assert not rb.is_training_case(rb.BenchCase("x", "x", None, None), set(), {""})  # no digest: never a match
    # a crop of a training case under another name: example_ct_sm is slices 82-111 of example_ct_full112 (it was
    # called unseen on Testing/Data, the evaluate audit)
    crop = rb.BenchCase("example_ct_sm", "example_ct_sm", None, None)
    assert rb.is_training_case(crop, {"example_ct_full112"}, set())
    assert not rb.is_training_case(crop, {"ct3slice_ct"}, set())


def _carried_resave(package, target, scale=0.0):
    """``package`` re-saved through carried_metadata with its weights multiplied by ``scale`` (another network)."""
    import torch

    from LiverTumorSegLib.package import carried_metadata, save_model_package

    model = package.model
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(scale)
    return save_model_package(target, model, package.metadata["preprocessing"],
                              metadata=carried_metadata(package.metadata))


def test_stored_table_records_its_weights_and_models_flags_a_resaved_package(tmp_path, monkeypatch, capsys):
    """A table re-saved with other weights (carried_metadata keeps it) was shown as that package's; and a file
    replaced between the run and the store got the measured network's rows. The settings now name the
    weights measured and the code's commit; models says 'STALE', and the store refuses a replaced file."""
    import torch

    from LiverTumorSegLib.commands import models as models_cmd
    from LiverTumorSegLib.package import load_model_package, read_package_metadata

    torch.manual_seed(0)
    write_case(tmp_path / "data")
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    package = tiny_unet_package(models_dir)
    assert rb.main([str(package.path), "--data", str(tmp_path / "data"), "--store-in-package",
                    "--perturbations", "baseline", "--threads", "1", "--quiet"]) == 0
    stored = read_package_metadata(package.path)
    settings = stored["robustness_settings"]
    assert settings["weights_sha256"] == stored["weights_sha256"] == package.sha256
    assert settings["benchmark_lesions"] == rb.BENCHMARK_LESIONS.to_dict()
    assert set(settings["code"]) <= {"git_commit", "git_modified"}  # {} outside a git clone
    assert models_cmd.robustness_weights_status(stored) == "these weights"

    resaved = _carried_resave(load_model_package(package.path), models_dir / "resaved.safetensors")
    assert models_cmd.robustness_weights_status(read_package_metadata(resaved)) == "other weights"
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(models_dir))
    capsys.readouterr()
    models_cmd.run(argparse.Namespace(json=False))
    text = capsys.readouterr().out
    assert text.count("STALE: measured on other weights") == 1
    models_cmd.run(argparse.Namespace(json=True))
    listed = {Path(e["path"]).name: e for e in json.loads(capsys.readouterr().out)["installed"]}
    assert listed["resaved.safetensors"]["robustness_weights"] == "other weights"
    assert listed["tiny.safetensors"]["robustness_settings"]["weights_sha256"] == package.sha256

    # the file is replaced after the run measured it: the store refuses, the file keeps its own (empty) table
    rows = [{"case": "case1_ct", "perturbation": "baseline", "liver_dice": 0.9, "tumor_dice": 0.5}]
    before = resaved.read_bytes()
    with pytest.raises(rb.InputError, match="file was replaced during the run"):
        rb.store_robustness(resaved, rows, dict(settings), replace_stored=True)
    assert resaved.read_bytes() == before


def test_a_table_measured_with_edited_code_says_so_at_store_and_in_models(tmp_path, monkeypatch, capsys):
    """--store-in-package from a checkout with uncommitted edits stored the table as the package's own without a
    word: only robustness_settings' code.git_modified said so, which models did not show."""
    import torch

    from LiverTumorSegLib.commands import models as models_cmd

    torch.manual_seed(0)
    write_case(tmp_path / "data")
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    package = tiny_unet_package(models_dir)
    monkeypatch.setattr(rb, "code_version", lambda: {"git_commit": "0123456789abcdef", "git_modified": True})
    assert rb.main([str(package.path), "--data", str(tmp_path / "data"), "--store-in-package",
                    "--perturbations", "baseline", "--threads", "1", "--quiet"]) == 0
    assert "warning: " in capsys.readouterr().err
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(models_dir))
    models_cmd.run(argparse.Namespace(json=False))
    assert "uncommitted code changes on commit 0123456789ab" in capsys.readouterr().out
    rows = [{"case": "a", "perturbation": "baseline", "liver_dice": 0.98, "tumor_dice": 0.8}]
    clean = {"code": {"git_commit": "0123456789abcdef", "git_modified": False}}
    assert not any("uncommitted" in line for line in models_cmd.robustness_lines(rows, settings=clean))


def test_code_version_counts_code_changes_only(tmp_path, monkeypatch):
    """A table stored into Resources/Models (the package and SHA256SUMS then differ from the commit) made the next
    run's table record git_modified of unchanged code, and models then said it was measured with changed code."""
    import shutil
    import subprocess

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    for name in ("LiverTumorSegLib/volume.py", "Resources/Models/SHA256SUMS", "README.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(git + ["init", "-q"], cwd=str(tmp_path), check=True)
    subprocess.run(git + ["add", "-A"], cwd=str(tmp_path), check=True)
    subprocess.run(git + ["commit", "-q", "-m", "c"], cwd=str(tmp_path), check=True)
    monkeypatch.setattr(rb, "ROOT", tmp_path)
    for name in ("Resources/Models/SHA256SUMS", "README.md"):
        (tmp_path / name).write_text("y\n")
    assert rb.code_version()["git_modified"] is False
    (tmp_path / "LiverTumorSegLib/volume.py").write_text("y\n")
    assert rb.code_version()["git_modified"] is True


def test_models_prints_means_rounded_once_and_names_perturbations_without_rows():
    from LiverTumorSegLib.commands import models as models_cmd

    # 0.8634, 0.8502, 0.9138, 0.5188 average 0.78655 -> 0.787; rounding to 4 places first gave 0.786
    rows = [{"case": c, "perturbation": "baseline", "liver_dice": 0.98, "tumor_dice": t}
            for c, t in zip("abcd", (0.8634, 0.8502, 0.9138, 0.5188))]
    lines = models_cmd.robustness_lines(rows, missing=models_cmd.missing_perturbations(
        rows, {"perturbations": ["baseline", "fov_liver20"]}))
    assert "baseline 0.980/0.787" in lines[1]
    assert lines[2].strip() == "no row (skipped on every case): fov_liver20"
    # a case without a tumor Dice (none inserted): the tumor mean is over fewer cases, which the line says
    rows[3]["tumor_dice"] = None
    assert "baseline 0.980/0.876 (tumor: 3 cases)" in models_cmd.robustness_lines(rows)[1]


def test_models_says_when_a_table_does_not_record_its_weights():
    """A table stored before tables named their weights: 'not recorded', said under the table (not 'STALE', not
    silence); no table: no status and no lines, also for a table that is not a list."""
    from LiverTumorSegLib.commands import models as models_cmd

    rows = [{"case": "a", "perturbation": "baseline", "liver_dice": 0.98, "tumor_dice": 0.8}]
    for settings in (None, {}, {"perturbations": ["baseline"]}, "not a dict"):
        metadata = {"robustness": rows, "robustness_settings": settings, "weights_sha256": "ab" * 32}
        assert models_cmd.robustness_weights_status(metadata) == "not recorded"
    lines = models_cmd.robustness_lines(rows, weights="not recorded")
    assert lines[-1] == "  (the table does not record the weights it was measured on: stored before tables did)"
    assert not any("STALE" in line for line in lines)
    assert models_cmd.robustness_weights_status({"robustness": [], "weights_sha256": "ab" * 32}) == ""
    assert models_cmd.robustness_means({"baseline": 0.9}) == [] and models_cmd.robustness_lines("rows") == []


def test_models_says_when_and_with_what_code_a_table_was_measured_and_leaves_out_values_no_dice_is():
    """The families' tables of 24 Nov were printed beside the default's of 2 Dec as if comparable (the benchmark's
    5 mm slab labels had changed between); a table re-sealed with a Dice of 7.5 printed 'baseline 4.236/0.875', and
    a Dice stored as text was left out of the mean without a word (the robustness audit)."""
    from LiverTumorSegLib.commands import models as models_cmd

    settings = {"date": "2026-11-24", "library_version": "0.1.0", "code": {"git_commit": "8b5a541c894bd7eb"}}
    rows = [{"case": "a", "perturbation": "baseline", "liver_dice": 0.98, "tumor_dice": 0.75},
            {"case": "b", "perturbation": "baseline", "liver_dice": 0.96, "tumor_dice": 0.85}]
    lines = models_cmd.robustness_lines(rows, settings=settings)
    assert lines[-1] == ("  measured 2026-11-24 with library 0.1.0 (code 8b5a541c): compare tables measured with the "
                         "same code")
    assert lines[1] == "  baseline 0.970/0.800"
    assert models_cmd.measured_with_text({}) == "" and models_cmd.measured_with_text(None) == ""
    rows[0]["liver_dice"], rows[1]["tumor_dice"] = 7.5, "0.85"
    (mean,) = models_cmd.robustness_means(rows)
    assert mean["liver_dice"] == pytest.approx(0.96) and mean["tumor_dice"] == pytest.approx(0.75)
    assert models_cmd.robustness_lines(rows)[1] == ("  baseline 0.960/0.750 (liver: 1 case) (tumor: 1 case) (2 stored "
                                                    "value(s) no Dice in 0..1, left out)")
    assert not models_cmd.is_dice(float("nan")) and not models_cmd.is_dice(True) and models_cmd.is_dice(0)


def test_field_of_view_rows_crop_the_whole_scan_not_the_kept_slices(tmp_path):
    """With --max-slices the kept slices lay within the liver +- 20 mm on every case, so the field-of-view rows
    were skipped everywhere (the stored table had none). They now crop the whole scan, with the same tumors."""
    from LiverTumorSegLib.io import write_label_map, write_volume
    from LiverTumorSegLib.volume import CTVolume

    phantom = write_case(tmp_path, shape=(20, 48, 48), spacing=(3.0, 3.0, 2.5))
    # 30 slices (75 mm) of liver-free body above and below: a scan reaching well beyond the liver
    ct = np.pad(phantom.ct.array, ((30, 30), (0, 0), (0, 0)), mode="edge")
    write_volume(tmp_path / "case1_ct.nii.gz", CTVolume(ct, phantom.ct.geometry), overwrite=True)
    write_label_map(tmp_path / "case1_liver_seg.nii.gz", np.pad(phantom.labels, ((30, 30), (0, 0), (0, 0))),
                    phantom.ct.geometry, overwrite=True)
    (found,) = rb.find_cases(tmp_path)
    case = rb.load_bench_case(found, seed=0, max_slices=8)
    whole = rb.load_bench_case(found, seed=0)
    assert case.sample.hu.shape[0] == 8 and case.cropped and not whole.cropped
    z0, z1 = rb.liver_centred_window(whole.original.labels, 8)
    np.testing.assert_array_equal(case.sample.labels, whole.sample.labels[z0:z1])  # the same tumors, cut
    np.testing.assert_array_equal(case.whole_sample().hu, whole.sample.hu)
    fov = rb.PERTURBATIONS["fov_liver20"][1](case, 0)
    liver_z = np.nonzero((whole.original.labels >= 1).any(axis=(1, 2)))[0]
    margin = int(np.ceil(20.0 / 2.5))
    assert fov.hu.shape[0] == liver_z.max() - liver_z.min() + 1 + 2 * margin > 8
    assert rb.planned_pairs([case], ["baseline", "fov_liver20", "thick5mm"], 0) == {
        ("case1_ct", "baseline"), ("case1_ct", "fov_liver20"), ("case1_ct", "thick5mm")}


def test_a_case_without_liver_is_refused_and_unpaired_files_are_named(tmp_path, capsys):
    from LiverTumorSegLib.io import write_label_map

    phantom = write_case(tmp_path / "data")
    write_label_map(tmp_path / "data" / "case1_liver_seg.nii.gz", np.zeros_like(phantom.labels),
                    phantom.ct.geometry, overwrite=True)
    (tmp_path / "data" / "lonely_ct.nii.gz").write_bytes((tmp_path / "data" / "case1_ct.nii.gz").read_bytes())
    assert rb.main(["default", "--data", str(tmp_path / "data"), "--perturbations", "baseline"]) == 2
    err = capsys.readouterr().err
    assert "not used (1 file(s) without a '<stem>_liver*.nii*' label beside them): lonely_ct.nii.gz" in err
    assert "error: Case 'case1_ct': its label map" in err and "has no liver voxel" in err


def test_store_refusal_comes_before_any_inference_also_for_rows_the_run_will_skip(tmp_path, capsys, monkeypatch):
    """The early check planned every (case, perturbation) pair, also those the run skips (5 mm slices on a
    5 mm scan), so a stored row for such a pair was found lost only after the whole run."""
    write_case(tmp_path / "data", spacing=(3.0, 3.0, 5.0))   # already 5 mm: thick5mm will be skipped
    package = tiny_unet_package(tmp_path)
    rows = [{"case": "case1_ct", "perturbation": "thick5mm", "liver_dice": 0.9, "tumor_dice": 0.5}]
    rb.store_robustness(package.path, rows, replace_stored=True)
    monkeypatch.setattr(rb, "evaluate", lambda *a, **k: pytest.fail("inference ran before the refusal"))
    assert rb.main([str(package.path), "--data", str(tmp_path / "data"), "--store-in-package",
                    "--perturbations", "baseline,thick5mm", "--quiet"]) == 2
    assert "('case1_ct', 'thick5mm')" in capsys.readouterr().err


def test_min_lesion_probability_option_reaches_the_post_processing(tmp_path, capsys, monkeypatch):
    """README told users to compare with --min-lesion-probability 0, which the benchmark did not have."""
    write_case(tmp_path / "data")
    package = tiny_unet_package(tmp_path)
    seen = []
    monkeypatch.setattr(rb, "evaluate", lambda engine, cases, names, seed, post, *a, **k: seen.append(post) or [])
    assert rb.main([str(package.path), "--data", str(tmp_path / "data"), "--perturbations", "baseline",
                    "--min-lesion-probability", "0", "--quiet"]) == 0
    assert seen[0].min_lesion_probability == 0.0 and seen[0].tubular_lesions_to_liver  # the rest as default
    assert "(min lesion probability 0)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:  # argparse's usage error, before any package is loaded
        rb.main([str(package.path), "--data", str(tmp_path / "data"), "--min-lesion-probability", "1.5"])
    assert stop.value.code == 2 and "must be a probability, from 0 to 1, got 1.5" in capsys.readouterr().err
    assert rb.main([str(package.path), "--data", str(tmp_path / "data"), "--min-lesion-probability", "0",
                    "--store-in-package"]) == 2
    assert "--store-in-package stores the table of the default inference" in capsys.readouterr().err


def test_each_package_runs_at_its_own_lesion_threshold_unless_one_is_given(tmp_path, capsys, monkeypatch):
    """A package recording its own threshold (v11's candidate: 0.75) is benchmarked at it, a package recording
    none at 0.65, in the same run; the JSON and a stored table record the threshold each ran at; one given on the
    command line applies to both."""
    import shutil

    from LiverTumorSegLib.inference.postprocess import PostprocessingOptions, with_min_lesion_probability
    from LiverTumorSegLib.package import read_package_metadata, set_package_min_lesion_probability

    write_case(tmp_path / "data")
    plain = tiny_unet_package(tmp_path)
    own = tmp_path / "own.safetensors"
    shutil.copyfile(plain.path, own)
    set_package_min_lesion_probability(own, 0.75)
    ran_at = []  # the threshold each package's segmentations would run at (a Segmenter resolves None so)

    def evaluate(engine, cases, names, seed, post, *a, **k):
        from LiverTumorSegLib.package import package_min_lesion_probability

        post = post if post is not None else PostprocessingOptions()  # None: segment's defaults
        ran_at.append(with_min_lesion_probability(post, package_min_lesion_probability(
            engine.package.metadata)).min_lesion_probability)
        return [{"case": "case1_ct", "perturbation": "original", "liver_dice": 0.9, "tumor_dice": 0.5,
                 "training_case": False}]

    monkeypatch.setattr(rb, "evaluate", evaluate)
    out = tmp_path / "rob.json"
    assert rb.main([str(plain.path), str(own), "--data", str(tmp_path / "data"), "--perturbations", "original",
                    "--quiet", "--json", str(out), "--store-in-package", "--replace-stored"]) == 0
    assert ran_at == [0.65, 0.75]
    printed = capsys.readouterr().out
    assert "(min lesion probability 0.65)" in printed and "(min lesion probability 0.75)" in printed
    assert [p["min_lesion_probability_used"] for p in json.loads(out.read_text())["packages"]] == [0.65, 0.75]
    assert read_package_metadata(own)["robustness_settings"]["postprocessing"]["min_lesion_probability"] == 0.75
    assert read_package_metadata(plain.path)["robustness_settings"]["postprocessing"]["min_lesion_probability"] == 0.65
    ran_at.clear()
    assert rb.main([str(plain.path), str(own), "--data", str(tmp_path / "data"), "--perturbations", "original",
                    "--quiet", "--json", str(out), "--overwrite", "--min-lesion-probability", "0.5"]) == 0
    assert ran_at == [0.5, 0.5]
    assert [p["min_lesion_probability_used"] for p in json.loads(out.read_text())["packages"]] == [0.5, 0.5]


def test_json_output_is_checked_before_the_run_and_never_replaces_an_input(tmp_path, capsys, monkeypatch):
    """--json replaced any file without a word, the CT, the data CSV and the package included, and was checked
    only after the whole benchmark (hours on real data)."""
    package = tiny_unet_package(tmp_path)
    write_case(tmp_path / "data")
    ran = []
    monkeypatch.setattr(rb, "evaluate", lambda *a, **k: ran.append(1) or [])
    inputs = [package.path] + sorted((tmp_path / "data").iterdir())
    before = {p: p.read_bytes() for p in inputs}
    for target in inputs:
        code = rb.main([str(package.path), "--data", str(tmp_path / "data"), "--json", str(target), "--quiet"])
        assert code == 2 and "error:" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in inputs} == before and ran == []
    existing = tmp_path / "old.json"
    existing.write_text("{}")
    assert rb.main([str(package.path), "--data", str(tmp_path / "data"), "--json", str(existing), "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err and existing.read_text() == "{}" and ran == []
    assert rb.main([str(package.path), "--data", str(tmp_path / "data"), "--json", str(tmp_path / "nowhere" / "r.json"),
                    "--quiet"]) == 2 and ran == []
    assert rb.main([str(package.path), "--data", str(tmp_path / "data"), "--json", str(existing), "--overwrite",
                    "--perturbations", next(iter(rb.PERTURBATIONS)), "--quiet"]) == 0 and ran == [1]
    assert json.loads(existing.read_text())["packages"][0]["rows"] == []


def test_label_map_and_allow_non_hu_that_its_messages_name_exist(tmp_path, capsys, monkeypatch):
    """A 0/255 label was refused with 'Map them with --label-map', an option robustness.py did not have (and an
    MR-like CT with 'allow_non_hu=True')."""
    from LiverTumorSegLib.io import read_volume, write_label_map

    package = tiny_unet_package(tmp_path)
    write_case(tmp_path / "data")
    label_path = tmp_path / "data" / "case1_liver_seg.nii.gz"
    label = read_volume(label_path)
    write_label_map(label_path, (label.array >= 1).astype(np.uint8) * 255, label.geometry, overwrite=True)
    seen = []
    monkeypatch.setattr(rb, "evaluate", lambda engine, cases, *a, **k: seen.extend(cases) or [])
    argv = [str(package.path), "--data", str(tmp_path / "data"), "--perturbations", next(iter(rb.PERTURBATIONS)),
            "--quiet"]
    assert rb.main(argv) == 2 and "--label-map" in capsys.readouterr().err
    assert rb.main(argv + ["--label-map", '{"255": 1}']) == 0
    (case,) = seen
    assert set(np.unique(case.original.labels)) == {0, 1} and case.read_options["label_map"] == {"255": 1}


def test_each_perturbation_runs_once_and_an_empty_list_is_refused(tmp_path, capsys, monkeypatch):
    """'original,baseline,baseline' stored baseline's rows twice (`models` then said 'over 4 cases' for 2); ','
    ran nothing and wrote an empty table with exit 0."""
    package = tiny_unet_package(tmp_path)
    write_case(tmp_path / "data")
    seen = []
    monkeypatch.setattr(rb, "evaluate", lambda engine, cases, perturbations, *a, **k: seen.append(perturbations)
                        or [])
    base = [str(package.path), "--data", str(tmp_path / "data"), "--quiet", "--perturbations"]
    assert rb.main(base + ["original,baseline,baseline"]) == 0
    assert seen == [["original", "baseline"]]
    assert rb.main(base + [","]) == 2 and "--perturbations names none" in capsys.readouterr().err


def test_field_of_view_rows_are_compared_with_the_whole_scan_under_max_slices(tmp_path, monkeypatch):
    """With --max-slices the fov rows cut the whole scan but were compared with the N-slice baseline: a field of
    view that changed nothing read as a loss (README: 0.809 'against 0.826'). A whole-scan baseline row is
    measured then and is the fov rows' reference."""
    rows = [{"case": "a", "perturbation": "baseline", "liver_dice": 0.98, "tumor_dice": 0.826},
            {"case": "a", "perturbation": "baseline_whole", "liver_dice": 0.981, "tumor_dice": 0.809},
            {"case": "a", "perturbation": "fov_liver20", "liver_dice": 0.981, "tumor_dice": 0.809},
            {"case": "a", "perturbation": "noise10", "liver_dice": 0.97, "tumor_dice": 0.806}]
    assert rb.paired_change(rows, "fov_liver20", "tumor_dice") == pytest.approx(0.0)
    assert rb.paired_change(rows, "noise10", "tumor_dice") == pytest.approx(-0.02)  # the others: baseline
    table = rb.summary_table(rows, ["baseline", "baseline_whole", "fov_liver20"])
    assert "+0.000 / +0.000" in table.splitlines()[-1]
    package = tiny_unet_package(tmp_path)
    write_case(tmp_path / "data")
    seen = []
    monkeypatch.setattr(rb, "evaluate", lambda engine, cases, perturbations, *a, **k: seen.append(perturbations)
                        or [])
    argv = [str(package.path), "--data", str(tmp_path / "data"), "--quiet", "--perturbations",
            "baseline,noise10,fov_liver20,fov_liver60"]
    assert rb.main(argv + ["--max-slices", "8"]) == 0 and rb.main(argv) == 0
    assert seen == [["baseline", "noise10", "baseline_whole", "fov_liver20", "fov_liver60"],
                    ["baseline", "noise10", "fov_liver20", "fov_liver60"]]
    (found,) = rb.find_cases(tmp_path / "data")
    whole = rb.load_bench_case(found, seed=0)  # a scan --max-slices did not cut: baseline_whole is its baseline
    assert rb.PERTURBATIONS["baseline_whole"][1](whole, 0) is whole.sample
    # a table with baseline_whole rows compares the fov rows with them alone, never with the N-slice baseline
    partial = [r for r in rows if r["perturbation"] != "baseline_whole"] + [
        {"case": "b", "perturbation": "baseline_whole", "liver_dice": 0.9, "tumor_dice": 0.5}]
    assert rb.paired_change(partial, "fov_liver20", "tumor_dice") is None


def test_a_refused_perturbed_volume_skips_its_row_not_the_run_and_allow_non_hu_reaches_segment(tmp_path,
                                                                                                monkeypatch):
    """air_pad15 on a one-slice case was refused by segment's HU check and stopped the whole run (every row
    measured before lost); --allow-non-hu reached the reading but not segment, which refused the CT anyway."""
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.inference import api

    write_case(tmp_path)
    case = rb.load_bench_case(rb.find_cases(tmp_path)[0], seed=0, allow_non_hu=True)
    calls = []

    def fake_segment(volume, package, **kwargs):
        calls.append(kwargs.get("allow_non_hu"))
        if len(calls) == 2:
            raise InputError("does not look like CT in Hounsfield units")
        from types import SimpleNamespace
        return SimpleNamespace(labels=np.zeros(volume.shape_zyx, np.uint8))

    monkeypatch.setattr(api, "segment_volume", fake_segment)
    logged = []
    engine = type("E", (), {"package": None})()
    rows = rb.evaluate(engine, [case], ["original", "air_pad15", "baseline"], seed=0, log=logged.append)
    assert [r["perturbation"] for r in rows] == ["original", "baseline"]
    assert any("air_pad15" in line and "skipped: segment refused the perturbed volume" in line for line in logged)
    assert calls == [True, True, True]


def test_every_perturbed_row_is_scored_on_its_own_segmentation(tmp_path, monkeypatch):
    """Segmentations were shared by id(sample): a perturbed copy freed after its row lent its id to the next, and
    spacing+30 was scored with another perturbation's labels (5 rows, 4 segmentations). Each row now gets the
    labels of its own volume; only an uncut scan's baseline_whole reuses baseline's."""
    from LiverTumorSegLib.inference import api
    from types import SimpleNamespace

    write_case(tmp_path)
    case = rb.load_bench_case(rb.find_cases(tmp_path)[0], seed=0)
    segmented = []

    def fake_segment(volume, package, **kwargs):  # labels that say which volume they were made from
        segmented.append(volume)
        return SimpleNamespace(labels=np.full(volume.shape_zyx, len(segmented) % 3, np.uint8))

    monkeypatch.setattr(api, "segment_volume", fake_segment)
    seen = {}
    score = rb.score
    monkeypatch.setattr(rb, "score", lambda sample, labels: seen.setdefault(len(seen), (sample.hu.shape, labels))
                        and score(sample, labels))  # no sample kept alive: its id is free for the next, as in a run
    # CPython gives a freed object's id to the next object of its size; here two rows' copies are made one
    # object (its fields replaced), so they share an id for certain, as freed copies may in a run
    import dataclasses
    slot = {}

    def at_one_address(factor):
        def make(c, seed):
            fresh = rb.scale_spacing(c.sample, factor)
            held = slot.setdefault("sample", fresh)
            for f in dataclasses.fields(fresh):
                setattr(held, f.name, getattr(fresh, f.name))
            return held
        return make

    monkeypatch.setitem(rb.PERTURBATIONS, "spacing-30", ("", at_one_address(0.70)))
    monkeypatch.setitem(rb.PERTURBATIONS, "spacing+30", ("", at_one_address(1.30)))
    names = ["baseline", "spacing-30", "spacing-15", "spacing+15", "spacing+30", "baseline_whole"]
    rows = rb.evaluate(type("E", (), {"package": None})(), [case], names, seed=0)
    assert [r["perturbation"] for r in rows] == names
    assert len(segmented) == 5  # baseline_whole of this uncut scan is its baseline
    for index, segmentation in enumerate([0, 1, 2, 3, 4, 0]):  # the segment call each row's labels came from
        shape, labels = seen[index]
        assert int(labels.flat[0]) == (segmentation + 1) % 3, names[index]
        assert segmented[segmentation].shape_zyx == shape, names[index]


def test_settings_record_the_label_map_and_non_hu_reading(tmp_path):
    """Tables scored against other reference livers (--label-map) or read with --allow-non-hu had identical
    settings, so they looked comparable."""
    args = argparse.Namespace(data="d", seed=0, max_slices=0, device="cpu", label_map='{"5": 1}', allow_non_hu=True)
    settings = rb.run_settings(args, [], ["baseline"], "0" * 64, {"commit": "x"})
    assert settings["label_map"] == '{"5": 1}' and settings["allow_non_hu"] is True


def test_storing_through_a_link_updates_the_package_it_names(tmp_path):
    """--store-in-package on a symlink replaced the link by a copy and left the package with its old table."""
    from LiverTumorSegLib.package import read_package_metadata

    package = tiny_unet_package(tmp_path)
    link = tmp_path / "alias.safetensors"
    link.symlink_to(package.path)
    rows = [{"case": "a", "perturbation": "baseline", "liver_dice": 0.9, "tumor_dice": None}]
    rb.store_robustness(link, rows, replace_stored=True)
    assert link.is_symlink() and read_package_metadata(package.path)["robustness"] == rows


def test_storing_through_a_link_in_the_bundled_folder_keeps_it_loadable(tmp_path, monkeypatch):
    """Resolving the link first recorded the new SHA-256 beside the target, not in the bundled SHA256SUMS that
    lists the link: every later load of the link failed its integrity check."""
    from LiverTumorSegLib.package import load_model_package, record_bundled_checksum

    package = tiny_unet_package(tmp_path)
    models = tmp_path / "res" / "Models"
    models.mkdir(parents=True)
    monkeypatch.setenv("LIVERTUMORSEG_RESOURCES", str(tmp_path / "res"))
    link = models / "linked.safetensors"
    link.symlink_to(package.path)
    (models / "SHA256SUMS").write_text("")
    record_bundled_checksum(link)
    load_model_package(link)
    rb.store_robustness(link, [{"case": "a", "perturbation": "baseline", "liver_dice": 0.9, "tumor_dice": None}],
                        replace_stored=True)
    load_model_package(link)


def test_a_refused_row_is_not_stored_as_if_the_table_were_whole(tmp_path, capsys, monkeypatch):
    """A perturbed volume segment refused was skipped, and --store-in-package then failed after the whole run
    (or with --replace-stored lost the row without a word); it stops before storing and says why."""
    package = tiny_unet_package(tmp_path)
    write_case(tmp_path / "data")

    def one_refused(engine, cases, perturbations, *args, **kwargs):
        args[-1].append((cases[0].case_id, "noise10", "does not look like CT"))
        return [{"case": cases[0].case_id, "perturbation": "baseline", "liver_dice": 0.9, "tumor_dice": None,
                 "training_case": False}]

    monkeypatch.setattr(rb, "evaluate", one_refused)
    argv = [str(package.path), "--data", str(tmp_path / "data"), "--quiet", "--perturbations", "baseline,noise10",
            "--store-in-package"]
    assert rb.main(argv) == 2 and "refused 1 perturbed volume(s)" in capsys.readouterr().err
    assert rb.main(argv + ["--replace-stored"]) == 0


def test_a_ct_file_given_as_data_is_named_as_not_a_csv(tmp_path, capsys):
    """A CT passed as --data was read as a CSV: 'is not UTF-8 text; save it as UTF-8 CSV (in Excel ...)'."""
    write_case(tmp_path / "data")
    assert rb.main(["default", "--data", str(tmp_path / "data" / "case1_ct.nii.gz"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "is a file but not a .csv" in err and "UTF-8" not in err


def test_a_folder_without_paired_cases_names_the_pairing_rule_and_the_files(tmp_path, capsys):
    """A label named otherwise (x_seg.nii.gz) gave 'Cannot tell the layout ... Expected one of: LiTS, MSD, IRCADb
    or a CSV': neither the benchmark's own pairing rule nor which files it had found."""
    write_case(tmp_path / "data")
    (tmp_path / "data" / "case1_liver_seg.nii.gz").rename(tmp_path / "data" / "case1_seg.nii.gz")
    assert rb.main(["default", "--data", str(tmp_path / "data"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "'<stem>_liver.nii[.gz]'" in err
    assert "case1_ct.nii.gz" in err and "case1_seg.nii.gz" in err


def test_stored_settings_and_json_record_the_device_and_precision_that_ran(tmp_path):
    """Settings recorded --device as asked ('auto', or 'cuda' where CUDA was missing and the CPU ran) and no
    precision, though --precision auto runs bf16 on a CPU with native bf16 and fp32 elsewhere (other Dice).
    What runs is the engine's choice after its bf16 check on the CT (this untrained network's near-tied logits can
    fail it on a bf16 CPU, which then runs fp32), so the expectation is an engine's run on the same CT."""
    phantom = write_case(tmp_path / "data")
    package = tiny_unet_package(tmp_path)
    out_json = tmp_path / "rob.json"
    assert rb.main([str(package.path), "--data", str(tmp_path / "data"), "--store-in-package", "--device", "cpu",
                    "--perturbations", "original", "--threads", "1", "--quiet", "--json", str(out_json)]) == 0
    from LiverTumorSegLib.inference.api import make_engine
    from LiverTumorSegLib.package import load_model_package, read_package_metadata

    engine = make_engine(load_model_package(package.path), "cpu", threads=1)
    engine.predict(phantom.ct)  # the bf16 check runs on this CT's middle batch, as in the benchmark's first run
    expected = engine.precision_used
    settings = read_package_metadata(package.path)["robustness_settings"]
    assert settings["device_used"] == "cpu" and settings["precision_used"] == expected
    entry = json.loads(out_json.read_text())["packages"][0]
    assert entry["device_used"] == "cpu" and entry["precision_used"] == expected
    assert entry["given"] == str(package.path)  # as typed: robustness_compare.py's --base/--candidate match it


def test_a_csv_case_without_liver_gets_the_benchmarks_error_without_training_notes(tmp_path, capsys, caplog):
    """Before the benchmark's own 'no liver voxel' error, two training notes were printed: 'no patient column ...
    can be split between training and validation' and 'training would call its whole CT background'."""
    import logging

    from LiverTumorSegLib.io import write_label_map

    phantom = write_case(tmp_path / "data")
    write_label_map(tmp_path / "data" / "case1_liver_seg.nii.gz", np.zeros_like(phantom.labels),
                    phantom.ct.geometry, overwrite=True)
    (tmp_path / "cases.csv").write_text("image,label\ndata/case1_ct.nii.gz,data/case1_liver_seg.nii.gz\n")
    with caplog.at_level(logging.WARNING):
        assert rb.main(["default", "--data", str(tmp_path / "cases.csv"), "--perturbations", "baseline"]) == 2
    said = caplog.text + capsys.readouterr().err
    assert "has no liver voxel" in said
    assert "taken as a patient of its own" not in said and "training would call" not in said


def test_in_plane_rotation_turns_image_and_label_together():
    hu = np.full((2, 41, 41), -100.0, dtype=np.float32)
    labels = np.zeros((2, 41, 41), dtype=np.uint8)
    hu[:, 13:28, 22:37], labels[:, 13:28, 22:37] = 60.0, 1      # a block towards +x of the slice centre (20, 20)
    hu[:, 18:23, 27:32], labels[:, 18:23, 27:32] = 20.0, 2
    s = rb.Sample(hu, labels, (2.0, 1.0, 1.0), (2.0, 1.0, 1.0))
    quarter = rb.rotate_in_plane(s, 90.0)                      # +x turns towards -y: np.rot90 with k=1
    np.testing.assert_allclose(quarter.hu, np.rot90(hu, 1, axes=(1, 2)), atol=1e-3)
    np.testing.assert_array_equal(quarter.labels, np.rot90(labels, 1, axes=(1, 2)))
    turned = rb.rotate_in_plane(s, 10.0)
    assert turned.hu.shape == hu.shape and turned.labels.dtype == np.uint8
    assert set(np.unique(turned.labels)) == {0, 1, 2}
    # the label follows the anatomy: inside the turned liver label the HU is the block's, outside it is not
    assert float(np.median(turned.hu[turned.labels == 1])) == pytest.approx(60.0, abs=1.0)
    assert float(np.median(turned.hu[turned.labels == 2])) == pytest.approx(20.0, abs=1.0)
    assert abs(int(np.count_nonzero(turned.labels >= 1)) - int(np.count_nonzero(labels >= 1))) <= 12
    assert float(np.median(turned.hu[turned.labels == 0])) == pytest.approx(-100.0, abs=1.0)
    assert turned.hu[0, 0, 0] == pytest.approx(-1000.0)        # a corner brought in from outside: air
    assert turned.spacing_zyx == s.spacing_zyx and turned.true_spacing_zyx == s.true_spacing_zyx


def test_in_plane_rotation_keeps_a_round_field_of_views_padding_where_it_was():
    """The padding (-3024 HU) outside a round field of view turned with the anatomy and was interpolated with the
    air beside it into -3024..-1000 HU values no scanner makes; the scanner's field does not turn with the patient."""
    yy, xx = np.mgrid[:41, :41]
    outside = (yy - 20) ** 2 + (xx - 20) ** 2 > 19 ** 2
    hu = np.full((2, 41, 41), -1000.0, dtype=np.float32)
    hu[:, 8:33, 30:40] = 40.0                                  # a body reaching the field's edge on the +x side
    labels = np.zeros(hu.shape, dtype=np.uint8)
    labels[:, 10:31, 30:40] = 1
    hu[:, outside], labels[:, outside] = -3024.0, 0
    s = rb.Sample(hu, labels, (2.0, 1.0, 1.0), (2.0, 1.0, 1.0))
    turned = rb.rotate_in_plane(s, 10.0)
    np.testing.assert_array_equal(turned.hu[:, outside], -3024.0)    # padding kept, nothing blended into it
    assert not turned.labels[:, outside].any()                       # anatomy turned out of the field is cut
    inside = turned.hu[:, ~outside]
    assert inside.min() >= -1000.0 - 1e-3                            # inside: anatomy and air only
    assert (turned.hu[:, ~outside] == 40.0).sum() > 100 and turned.labels.sum() > 300


def tilted_block_sample(nz=24, spacing=(2.0, 1.0, 1.5)):
    """Noisy tissue (40 +- 10 HU, seeded) filling a ``(nz, 40, 16)`` grid with a liver block (100 HU, label 1)
    holding a tumor (150 HU, label 2), both off the grid's centre in z and y."""
    rng = np.random.default_rng(0)
    hu = (40.0 + 10.0 * rng.standard_normal((nz, 40, 16))).astype(np.float32)
    labels = np.zeros(hu.shape, dtype=np.uint8)
    hu[12:22, 20:32, 3:13], labels[12:22, 20:32, 3:13] = 100.0, 1
    hu[15:19, 24:29, 6:10], labels[15:19, 24:29, 6:10] = 150.0, 2
    return rb.Sample(hu, labels, spacing, spacing)


def centre_mm(mask, spacing):
    """The centre of ``mask`` in mm from the grid's centre, (z, y, x)."""
    return (np.argwhere(mask).mean(axis=0) - (np.asarray(mask.shape) - 1) / 2.0) * np.asarray(spacing)


@pytest.mark.parametrize("fill_hu", [0.0, -1024.0])
def test_regrid_rows_tilt_about_left_right_and_fill_beyond_the_old_grid_with_exactly_the_fill(fill_hu):
    """The regrid rows: the CT resampled onto a grid turned about the left-right axis through its centre (what a
    registration or SimpleITK's resampling with its default fill 0 HU makes). The fill is exactly ``fill_hu``, label
    0; the label stays on the anatomy and moves by the rotation (in mm: the slices are 2 mm, the pixels 1 mm)."""
    s = tilted_block_sample()
    out = rb.regrid_tilted(s, 30.0, fill_hu)
    assert out.hu.shape == s.hu.shape and out.hu.dtype == np.float32 and out.labels.dtype == np.uint8
    assert out.spacing_zyx == s.spacing_zyx and out.true_spacing_zyx == s.true_spacing_zyx
    other = rb.regrid_tilted(s, 30.0, -500.0)
    fill = out.hu != other.hu                                  # only the fill depends on the fill value
    assert fill.mean() > 0.15 and fill[0].any() and fill[-1].any()   # large, in the first and last slices
    np.testing.assert_array_equal(fill.all(axis=2), fill.any(axis=2))   # turned about x: whole rows along x
    assert np.all(out.hu[fill] == np.float32(fill_hu)) and not out.labels[fill].any()
    assert out.hu[0, 0, 0] == np.float32(fill_hu) and out.hu[-1, -1, -1] == np.float32(fill_hu)  # corners
    np.testing.assert_array_equal(out.labels, other.labels)
    assert out.hu[~fill].min() > -20.0                         # inside: the tissue, no fill blended in
    # the label follows the anatomy: the HU under each label is its block's
    assert float(np.median(out.hu[out.labels == 1])) == pytest.approx(100.0, abs=1.0)
    assert float(np.median(out.hu[out.labels == 2])) == pytest.approx(150.0, abs=1.0)
    assert abs(int(np.count_nonzero(out.labels >= 1)) - int(np.count_nonzero(s.labels >= 1))) <= 0.1 * np.count_nonzero(s.labels >= 1)
    # ... and its centre lands where the rotation puts it: (dz, dy) -> (dz cos + dy sin, -dz sin + dy cos)
    dz, dy, dx = centre_mm(s.labels >= 1, s.spacing_zyx)
    a = np.deg2rad(30.0)
    expected = (dz * np.cos(a) + dy * np.sin(a), -dz * np.sin(a) + dy * np.cos(a), dx)
    np.testing.assert_allclose(centre_mm(out.labels >= 1, s.spacing_zyx), expected, atol=0.75)
    again = rb.regrid_tilted(s, 30.0, fill_hu)                 # deterministic
    np.testing.assert_array_equal(again.hu, out.hu)
    np.testing.assert_array_equal(again.labels, out.labels)
    unturned = rb.regrid_tilted(s, 0.0, fill_hu)               # no turn: the grid itself, nothing filled
    np.testing.assert_array_equal(unturned.hu, s.hu)
    np.testing.assert_array_equal(unturned.labels, s.labels)


def test_regrid_rows_record_the_turned_grid_so_the_anatomy_keeps_its_place_in_the_patient():
    """A resample module writes the turned grid's direction and origin; the rows claimed an axial grid (identity
    direction, origin 0), so segment could not know the slices were oblique. The liver's centre in LPS mm is now the
    same on the turned grid as on the original one, and an unturned sample keeps the canonical grid."""
    from LiverTumorSegLib.orientation import obliquity_degrees
    from LiverTumorSegLib.volume import ImageGeometry

    s = tilted_block_sample()
    out = rb.regrid_tilted(s, 30.0, -1024.0)
    before, after = s.volume("c").geometry, out.volume("c").geometry
    assert before.direction == ImageGeometry(spacing=(1, 1, 1)).direction and before.origin == (0.0, 0.0, 0.0)

    def liver_centre_lps(labels, geometry):
        ijk = np.argwhere(labels >= 1)[:, ::-1].mean(axis=0)
        return geometry.index_to_lps(ijk)

    np.testing.assert_allclose(liver_centre_lps(out.labels, after), liver_centre_lps(s.labels, before), atol=0.75)
    assert obliquity_degrees(after.direction_matrix) == pytest.approx(30.0, abs=1e-6)
    assert after.spacing == before.spacing
    unturned = rb.regrid_tilted(s, 0.0, -1024.0).volume("c").geometry
    assert unturned.almost_equal(before, tol=1e-9)


def test_regrid_rows_run_with_their_fill_and_skip_a_slab_too_thin_for_the_tilt():
    s = tilted_block_sample()
    case = rb.BenchCase("c", "c", s, s)
    zero = rb.PERTURBATIONS["regrid_fill0"][1](case, 0)
    air = rb.PERTURBATIONS["regrid_fill-1024"][1](case, 0)
    np.testing.assert_array_equal(zero.hu, rb.regrid_tilted(s, rb.REGRID_DEGREES, 0.0).hu)
    np.testing.assert_array_equal(air.hu, rb.regrid_tilted(s, rb.REGRID_DEGREES, -1024.0).hu)
    assert rb.REGRID_DEGREES == 30.0 and (air.hu == -1024.0).sum() == (zero.hu == 0.0).sum() > 0
    # a 3-slice CT (3 mm thick) turned 30 degrees keeps a sliver of its liver: skipped, with the reason
    thin = rb.Sample(s.hu[15:18], s.labels[15:18], (1.0, 1.0, 1.5), (1.0, 1.0, 1.5))
    assert rb.regrid_tilted(thin, 30.0, 0.0) is None
    assert rb.PERTURBATIONS["regrid_fill0"][1](rb.BenchCase("t", "t", thin, thin), 0) is None
    assert "too thin" in rb.skip_reason("regrid_fill0") == rb.skip_reason("regrid_fill-1024")
    assert rb.planned_pairs([rb.BenchCase("t", "t", thin, thin), case], ["regrid_fill0"], 0) == {("c", "regrid_fill0")}


def test_a_stored_table_without_the_regrid_rows_is_neither_flagged_nor_refused(tmp_path):
    """Rows the code has but a stored table lacks (the regrid rows came after the bundled table) are no staleness:
    ``models`` names only perturbations the table's own run asked for, and a run adding rows keeps the table."""
    from LiverTumorSegLib.commands import models as models_cmd

    asked = ["original", "baseline", "rotate-10"]
    assert "regrid_fill0" in rb.PERTURBATIONS and "regrid_fill0" not in asked
    rows = [{"case": c, "perturbation": p, "liver_dice": 0.97, "tumor_dice": 0.8} for c in "ab" for p in asked]
    lines = models_cmd.robustness_lines(rows, missing=models_cmd.missing_perturbations(rows, {"perturbations": asked}))
    assert not any("no row" in line or "regrid" in line for line in lines)
    covered = rb._covered(rows) | {(c, p) for c in "ab" for p in ("regrid_fill0", "regrid_fill-1024")}
    rb.check_table_kept(tmp_path / "p.safetensors", {"robustness": rows}, covered)   # no InputError


def test_in_plane_field_of_view_is_a_square_around_the_liver_kept_inside_the_image():
    hu = np.arange(3 * 100 * 120, dtype=np.float32).reshape(3, 100, 120)
    labels = np.zeros((3, 100, 120), dtype=np.uint8)
    labels[1, 30:50, 20:60] = 1                                # liver box: y 30..49, x 20..59 (centres 40, 40)
    s = rb.Sample(hu, labels, (3.0, 1.0, 0.5), (3.0, 1.0, 0.5))
    out = rb.crop_in_plane(s, 40.0)                            # 40 px in y (1 mm), 80 px in x (0.5 mm)
    assert out.hu.shape == (3, 40, 80)
    np.testing.assert_array_equal(out.hu, hu[:, 20:60, 0:80])  # x window 0..79: clamped at the image's edge
    assert int(out.labels.sum()) == int(labels.sum())          # the liver fits: nothing of it cut
    small = rb.crop_in_plane(s, 30.0)                          # narrower than the liver in y: the label is cut too
    assert small.hu.shape == (3, 30, 60)
    np.testing.assert_array_equal(small.labels, labels[:, 25:55, 10:70])
    assert rb.crop_in_plane(s, 200.0) is None                  # the image is no larger already
    assert rb.skip_reason("fov_xy300").startswith("the image is no larger")


def test_sharper_kernel_overshoots_edges_and_leaves_flat_slices_and_z_alone():
    hu = np.zeros((3, 32, 32), dtype=np.float32)
    hu[0] = 50.0                                               # a flat slice stays flat (no z mixing)
    hu[1, :, 16:] = 100.0                                      # a step edge
    hu[2] = -300.0
    s = rb.Sample(hu, np.zeros(hu.shape, np.uint8), (5.0, 1.0, 1.0), (5.0, 1.0, 1.0))
    out = rb.sharpen_in_plane(s, amount=2.0, sigma_mm=1.0)
    np.testing.assert_allclose(out.hu[0], 50.0, atol=1e-3)
    np.testing.assert_allclose(out.hu[2], -300.0, atol=1e-3)
    assert float(out.hu[1, 10, 16]) > 120.0 and float(out.hu[1, 10, 15]) < -20.0  # overshoot both sides
    np.testing.assert_allclose(out.hu[1, :, :8], 0.0, atol=1e-2)  # far from the edge: unchanged
    coarse = rb.sharpen_in_plane(rb.Sample(hu, s.labels, (5.0, 3.0, 3.0), (5.0, 3.0, 3.0)))
    assert float(np.abs(coarse.hu - hu).max()) < float(np.abs(out.hu - hu).max()) / 2  # 3 mm pixels: barely


def test_sharper_kernel_leaves_the_padding_outside_a_round_field_of_view_out():
    """The padding (-3024 HU) around a round field of view was blurred in with the air inside it: the air at the
    field's edge came out above -500 HU, a ring no sharper kernel makes, and the padding itself changed."""
    yy, xx = np.mgrid[:40, :40]
    inside = (yy - 19.5) ** 2 + (xx - 19.5) ** 2 < 18.0 ** 2
    hu = np.where(inside, np.float32(-1000.0), np.float32(-3024.0))[None].repeat(2, axis=0).astype(np.float32)
    hu[:, 15:25, 15:25] = 50.0                                 # a body inside: its edges still overshoot
    s = rb.Sample(hu, np.zeros(hu.shape, np.uint8), (5.0, 1.0, 1.0), (5.0, 1.0, 1.0))
    out = rb.sharpen_in_plane(s).hu
    np.testing.assert_array_equal(out[:, ~inside], -3024.0)    # the padding is left as it is
    air = inside & ((yy - 19.5) ** 2 + (xx - 19.5) ** 2 > 12.0 ** 2)
    np.testing.assert_allclose(out[:, air], -1000.0, atol=1.0)  # the air at the field's edge stays air
    assert float(out[0, 20, 25]) < -1010.0 and float(out[0, 20, 24]) > 150.0  # the body's edge overshoots


def test_sharper_kernel_keeps_values_in_the_scanners_range():
    """Air beside a bright edge overshot to -2422 HU on the 0.98 mm shared CT: below what a scanner stores."""
    hu = np.full((1, 32, 32), -1000.0, dtype=np.float32)
    hu[0, :, 16:] = 1500.0                                     # air against dense bone
    s = rb.Sample(hu, np.zeros(hu.shape, np.uint8), (5.0, 1.0, 1.0), (5.0, 1.0, 1.0))
    out = rb.sharpen_in_plane(s, amount=2.0, sigma_mm=1.0).hu
    assert float(out.min()) == rb.SCANNER_MIN_HU                # the undershoot reaches the floor and stops there
    assert float(out[0, 10, 16]) > 1600.0 and float(out.max()) <= rb.METAL_HU


def test_cli_precision_reaches_the_engine_and_the_json_records_what_ran(tmp_path, monkeypatch):
    made, document = _run_with_engine_spy(tmp_path, monkeypatch, "--precision", "fp32")
    assert [m.get("precision") for m in made] == ["fp32"] and document["precision"] == "fp32"
    assert [r["precision_used"] for r in document["packages"]] == ["fp32"]


def test_hyperdense_row_inserts_tumors_brighter_than_the_liver_into_the_real_ct(tmp_path):
    write_case(tmp_path)  # a noise-free tumor-free phantom: liver 60 HU
    case = rb.load_bench_case(rb.find_cases(tmp_path)[0], seed=0)
    sample = rb.PERTURBATIONS["hyperdense"][1](case, rb.case_seed(case.case_id + "hyperdense", 0))
    tumor, liver = sample.labels == 2, sample.labels == 1
    assert tumor.sum() > 20 and not (case.original.labels == 2).any()
    assert float(np.median(sample.hu[tumor])) > float(np.median(sample.hu[liver])) + 10.0  # brighter, not darker
    outside = sample.labels == 0
    np.testing.assert_array_equal(sample.hu[outside], case.original.hu[outside])  # only the liver is changed
    again = rb.PERTURBATIONS["hyperdense"][1](case, rb.case_seed(case.case_id + "hyperdense", 0))
    np.testing.assert_array_equal(again.labels, sample.labels)  # seeded
    assert rb.HYPERDENSE_LESIONS.hypodense_probability == 0.0
    assert rb.HYPERDENSE_LESIONS.diameter_range_mm == rb.BENCHMARK_LESIONS.diameter_range_mm


def test_dome_anchor_is_the_slice_the_depth_below_the_liver_top_or_its_lowest_slice():
    labels = np.zeros((30, 4, 4), dtype=np.uint8)
    labels[4:22, 1:3, 1:3] = 1                                 # liver on z 4..21 (z grows towards the head)
    assert rb.dome_anchor_slice(labels, 2.0) == 21 - 8         # 15 mm = 7.5 slices, rounded to 8
    assert rb.dome_anchor_slice(labels, 5.0) == 21 - 3
    assert rb.dome_anchor_slice(labels, 2.0, depth_mm=6.0) == 18
    assert rb.dome_anchor_slice(labels, 0.5) == 4              # the liver is shorter than 15 mm: its lowest slice


def test_dome_row_puts_tumors_in_the_liver_top_and_large_row_one_confluent_mass(tmp_path):
    from scipy import ndimage

    write_case(tmp_path, shape=(24, 48, 48))  # liver on z 2..21 of 2.5 mm slices, 97 mL; liver 60 HU
    case = rb.load_bench_case(rb.find_cases(tmp_path)[0], seed=0)
    liver_z = np.flatnonzero((case.original.labels >= 1).any(axis=(1, 2)))
    voxel_ml = float(np.prod(case.original.spacing_zyx)) / 1000.0
    for seed in range(3):
        dome = rb.PERTURBATIONS["dome"][1](case, rb.case_seed(case.case_id + "dome", seed))
        tumor_z = np.nonzero(dome.labels == 2)[0]
        anchor = rb.dome_anchor_slice(case.original.labels, case.original.spacing_zyx[0])
        assert anchor == 21 - 6 and tumor_z.min() <= anchor <= tumor_z.max()
        assert float(np.mean(tumor_z)) > float(np.mean(liver_z)) + 2  # voxel-weighted: in the upper part
        assert np.array_equal(dome.labels >= 1, case.original.labels >= 1)               # liver extent kept
        large = rb.PERTURBATIONS["large_confluent"][1](case, rb.case_seed(case.case_id + "large", seed))
        _, masses = ndimage.label(large.labels == 2, np.ones((3, 3, 3)))
        assert masses == 1                                                               # confluent
        assert float(np.count_nonzero(large.labels == 2)) * voxel_ml > 25.0  # > a 36 mm ball: large
    assert rb.LARGE_CONFLUENT_LESIONS.cluster_probability == 1.0
    assert rb.DOME_LESIONS.hypodense_probability == rb.BENCHMARK_LESIONS.hypodense_probability


def test_dome_depth_is_counted_from_the_whole_livers_top_under_max_slices(tmp_path):
    """--max-slices cut the liver's top off example_ct_full112, and the dome tumors were put 15 mm below the kept
    window's top liver slice (the cut), not below the liver's top."""
    write_case(tmp_path, shape=(24, 48, 48))  # liver on z 2..21 of 2.5 mm slices: 15 mm below its top is z 15
    found = rb.find_cases(tmp_path)[0]
    case = rb.load_bench_case(found, seed=0, max_slices=12)
    z0, z1 = rb.liver_centred_window(rb.load_bench_case(found, seed=0).original.labels, 12)
    assert case.cropped and z1 <= 21 and z0 <= 15 < z1   # the window leaves the liver's top out, keeps z 15
    assert rb.dome_anchor_slice(case.original.labels, 2.5, liver_top=case.liver_top) == 15 - z0
    dome = rb.PERTURBATIONS["dome"][1](case, rb.case_seed(case.case_id + "dome", 0))
    tumor_z = np.nonzero(dome.labels == 2)[0]
    assert tumor_z.min() <= 15 - z0 <= tumor_z.max()
    short = rb.load_bench_case(found, seed=0, max_slices=4)  # z 10..13: the anchor is above the kept slices
    assert rb.PERTURBATIONS["dome"][1](short, 0) is None and "--max-slices" in rb.skip_reason("dome")


def test_fluid_row_puts_water_at_the_liver_edge_labelled_background_and_scores_it(tmp_path):
    from scipy import ndimage

    write_case(tmp_path, shape=(24, 48, 48))  # liver on z 2..21 of 2.5 mm slices, 97 mL; liver 60 HU, no noise
    case = rb.load_bench_case(rb.find_cases(tmp_path)[0], seed=0)
    original, voxel_ml = case.original, float(np.prod(case.original.spacing_zyx)) / 1000.0
    sizes = []
    for seed in range(3):
        fluid = rb.PERTURBATIONS["fluid_region"][1](case, rb.case_seed(case.case_id + "fluid_region", seed))
        was_liver = original.labels >= 1
        assert fluid.fluid.any() and not (fluid.fluid & ~was_liver).any()       # water only where liver was
        assert not (fluid.labels[fluid.fluid]).any()                             # ... labelled background
        np.testing.assert_array_equal(fluid.labels[~fluid.fluid], original.labels[~fluid.fluid])
        np.testing.assert_array_equal(fluid.hu[~was_liver], original.hu[~was_liver])  # nothing outside changed
        assert rb.FLUID_HU[0] - 1.0 <= float(np.median(fluid.hu[fluid.fluid])) <= rb.FLUID_HU[1] + 1.0
        assert (ndimage.binary_dilation(fluid.fluid) & ~was_liver).any()         # at the liver's edge
        sizes.append(float(np.count_nonzero(fluid.fluid)) * voxel_ml)
        again = rb.PERTURBATIONS["fluid_region"][1](case, rb.case_seed(case.case_id + "fluid_region", seed))
        np.testing.assert_array_equal(again.hu, fluid.hu)                         # seeded
        scores = rb.score(fluid, original.labels)   # a prediction calling the water liver
        assert scores["fluid_ml"] == pytest.approx(sizes[-1], abs=0.01)
        assert scores["fluid_as_liver_ml"] == scores["fluid_ml"] and scores["fluid_as_tumor_ml"] == 0.0
        assert rb.score(fluid, fluid.labels)["fluid_as_liver_ml"] == 0.0
    assert min(sizes) > 20.0 and len(set(sizes)) == 3  # a large part of a 97 mL liver (40-67 mL), one per seed
    assert "fluid_ml" not in rb.score(original, original.labels)  # only the fluid row has the keys


def perihepatic_case(shape=(6, 64, 64), noise_hu=8.0):
    """A phantom (3 mm voxels, liver 60 HU with ``noise_hu`` of noise) with a rib of 700 HU between the liver's right
    side and the body wall and a pocket of gas (-900 HU) in front of the liver, as a BenchCase."""
    phantom = make_phantom(shape, (3.0, 3.0, 3.0), lesions=[], noise_hu=noise_hu, seed=1)
    hu = phantom.ct.array.astype(np.float32)
    liver = phantom.labels >= 1
    assert not liver[:, 18:30, 4:7].any() and not liver[:, 8:10, 14:24].any()
    hu[:, 18:30, 4:7] = 700.0    # a rib 3-9 mm right of the liver (its edge at x 7-8)
    hu[:, 8:10, 14:24] = -900.0  # gas in front of it
    sample = rb.Sample(hu, phantom.labels.astype(np.uint8), (3.0, 3.0, 3.0), (3.0, 3.0, 3.0))
    return rb.BenchCase("peri", "peri", sample, sample)


def in_plane_angles_deg(mask, liver):
    """Angle (degrees) of each voxel of ``mask`` seen from its slice's liver centroid: 0 the patient's right (-x),
    +90 the back (+y), as the row draws its sector."""
    angles = []
    for z in np.flatnonzero(mask.any(axis=(1, 2))):
        ly, lx = np.nonzero(liver[z])
        y, x = np.nonzero(mask[z])
        angles.append(np.degrees(np.arctan2(y - ly.mean(), -(x - lx.mean()))))
    return np.concatenate(angles)


def test_perihepatic_fluid_puts_a_water_layer_outside_the_liver_and_leaves_bone_air_and_labels(tmp_path):
    from scipy import ndimage

    case = perihepatic_case()
    original = case.original
    liver = original.labels >= 1
    outside_mm = np.stack([ndimage.distance_transform_edt(~liver[z], sampling=(3.0, 3.0)) for z in range(6)])
    keep = (original.hu > 300.0) | (original.hu < -500.0)
    assert keep[:, 18:30, 4:7].all() and keep[:, 8:10, 14:24].all()
    made, directions = {}, []
    for seed in range(4):
        out = rb.PERTURBATIONS["perihepatic_fluid"][1](case, seed)
        made[seed] = out
        assert out is not None and out.fluid.any() and not (out.fluid & liver).any()      # outside the liver
        np.testing.assert_array_equal(out.labels, original.labels)                       # labels unchanged
        np.testing.assert_array_equal(out.hu[liver | keep], original.hu[liver | keep])  # liver, bone, gas kept
        changed = out.hu != original.hu
        assert outside_mm[out.fluid].max() <= rb.PERIHEPATIC_THICKNESS_MM[1]              # within T
        assert outside_mm[changed].max() <= rb.PERIHEPATIC_THICKNESS_MM[1] + 4.0 * rb.FLUID_EDGE_MM  # + soft edge
        assert np.abs(in_plane_angles_deg(out.fluid, liver)).max() <= rb.PERIHEPATIC_REACH_DEG  # never medial
        core = out.fluid & ~ndimage.binary_dilation(~out.fluid & ~liver, np.ones((1, 3, 3), bool))
        assert core.sum() > 20
        assert rb.FLUID_HU[0] - 4.0 <= float(out.hu[core].mean()) <= rb.FLUID_HU[1] + 4.0    # water, with grain
        assert float(out.hu[core].std()) > 3.0                                             # the liver's noise
        directions.append(float(np.median(in_plane_angles_deg(out.fluid, liver))))
        np.testing.assert_array_equal(rb.PERTURBATIONS["perihepatic_fluid"][1](case, seed).hu, out.hu)  # seeded
    assert max(directions) - min(directions) > 30.0                                        # other seed, other sector
    voxel_ml = 27.0 / 1000.0
    out = made[0]
    called_tumor = original.labels.copy()
    called_tumor[out.fluid] = 2
    scores = rb.score(out, called_tumor)
    assert scores["fluid_ml"] == pytest.approx(out.fluid.sum() * voxel_ml, abs=0.01) and scores["fluid_ml"] >= 5.0
    assert scores["fluid_as_tumor_ml"] == scores["fluid_ml"] and scores["fluid_as_liver_ml"] == 0.0
    assert scores["false_lesions"] >= 1
    right = rb.score(out, original.labels)
    assert right["fluid_as_tumor_ml"] == 0.0 and right["fluid_as_liver_ml"] == 0.0


def test_perihepatic_fluid_row_carries_the_fluid_columns():
    from LiverTumorSegLib.inference.engine import SliceInferenceEngine

    case = perihepatic_case(noise_hu=0.0)
    engine = SliceInferenceEngine(oracle_package(), device="cpu", batch_predictor=oracle_predictor)
    rows = rb.evaluate(engine, [case], ["perihepatic_fluid"], seed=0)
    assert len(rows) == 1 and rows[0]["fluid_ml"] >= 5.0
    assert 0.0 <= rows[0]["fluid_as_liver_ml"] + rows[0]["fluid_as_tumor_ml"] <= rows[0]["fluid_ml"]


def test_perihepatic_fluid_is_skipped_where_no_soft_tissue_borders_the_liver():
    spacing = (3.0, 2.0, 2.0)
    hu = np.full((8, 50, 50), -1000.0, dtype=np.float32)
    labels = np.zeros(hu.shape, dtype=np.uint8)
    labels[:, 10:40, 10:40] = 1                                              # 60 x 60 mm, 24 mm high: 86 mL
    hu[labels == 1] = 60.0
    in_air = rb.Sample(hu, labels, spacing, spacing)                         # a liver in air (lung)
    assert rb.with_perihepatic_fluid(rb.BenchCase("a", "a", in_air, in_air), 0) is None
    walled = hu.copy()
    walled[:, 6:44, 6:44][labels[:, 6:44, 6:44] == 0] = 700.0               # a liver walled in by bone
    walled_in = rb.Sample(walled, labels, spacing, spacing)
    assert rb.with_perihepatic_fluid(rb.BenchCase("b", "b", walled_in, walled_in), 0) is None
    soft = hu.copy()
    soft[:, 2:48, 2:48][labels[:, 2:48, 2:48] == 0] = 40.0                  # the same liver in 16 mm of soft tissue
    in_tissue = rb.Sample(soft, labels, spacing, spacing)
    assert rb.with_perihepatic_fluid(rb.BenchCase("c", "c", in_tissue, in_tissue), 0) is not None
    assert "5 mL" in rb.skip_reason("perihepatic_fluid")


def trunk_with_spine(nz=6, liver_slices=(1, 5), padding=False):
    """A (z, y, x) trunk of 1 mm pixels in the canonical LPS grid (y grows to the back): soft tissue of 40 HU in an
    ellipse, a vertebra of 700 HU on the midline behind its centre, liver (label 1) on the patient's right (low x)
    in ``liver_slices``; ``padding``: -3024 outside a circular field of view."""
    y, x = np.mgrid[0:120, 0:120]
    hu = np.full((nz, 120, 120), -1000.0, dtype=np.float32)
    hu[:, ((y - 60) / 45.0) ** 2 + ((x - 60) / 55.0) ** 2 <= 1] = 40.0
    hu[:, 80:95, 54:66] = 700.0
    if padding:
        hu[:, (y - 60) ** 2 + (x - 60) ** 2 > 59 ** 2] = -3024.0
    labels = np.zeros(hu.shape, dtype=np.uint8)
    labels[liver_slices[0]:liver_slices[1], 40:75, 15:50] = 1
    return rb.Sample(hu, labels, (2.0, 1.0, 1.0), (2.0, 1.0, 1.0))


def test_metal_streaks_put_metal_in_the_spine_and_fading_streaks_in_the_liver_slices_only():
    s = trunk_with_spine(padding=True)
    out = rb.metal_streaks(s, seed=3)
    np.testing.assert_array_equal(out.labels, s.labels)                     # the label is unchanged
    for z in (0, 5):                                                        # slices without liver: untouched
        np.testing.assert_array_equal(out.hu[z], s.hu[z])
    metal = out.hu >= rb.METAL_HU
    assert metal[1:5].any(axis=(1, 2)).all() and not metal[[0, 5]].any()
    _, my, mx = np.nonzero(metal)
    assert 80 <= np.median(my) <= 95 and 54 <= np.median(mx) <= 66        # in the vertebra, on the midline
    assert 5 * 30 * 0.8 <= metal[2].sum() <= 7 * 31 * 1.2                   # a 6 x 30 mm bar
    change = np.abs(out.hu[2] - s.hu[2])
    y, x = np.mgrid[0:120, 0:120]
    r = np.hypot(y - np.median(my), x - np.median(mx))
    near, far = change[(r > 18) & (r < 25)], change[(r > 45) & (r < 55) & (s.hu[2] > -1500)]
    assert near.max() > 300.0 and near.mean() > 1.5 * far.mean() > 0.0    # several hundred HU near, fading
    soft = (s.hu[2] == 40.0) & ~metal[2]
    assert (out.hu[2][soft] > 140).any() and (out.hu[2][soft] < -60).any()  # bright and dark streaks
    assert (out.hu[2][s.labels[2] == 1] != 40.0).any()                      # they cross the liver
    np.testing.assert_array_equal(out.hu[s.hu < -1500], s.hu[s.hu < -1500])  # padding outside the FOV kept
    assert out.hu[s.hu >= -1500].min() >= -1024.0 and out.hu.max() <= rb.METAL_HU
    np.testing.assert_array_equal(rb.metal_streaks(s, seed=3).hu, out.hu)  # deterministic given the seed
    assert not np.array_equal(rb.metal_streaks(s, seed=4).hu, out.hu)


@pytest.mark.parametrize("spacing_yx, centre", [((1.0, 1.0), (0.0, 0.0)), ((3.0, 3.0), (0.0, 0.0)),
                                                 ((3.0, 3.0), (1.2, -0.7)), ((0.7, 0.8), (0.3, 0.45))])
def test_metal_bar_covers_its_area_on_any_pixel_size(spacing_yx, centre):
    """Every pixel whose centre lay in the 6 x 30 mm bar was metal: on 3 mm pixels the bar was 9 x 33 mm."""
    sy, sx = spacing_yx
    dy = (np.arange(60, dtype=np.float32)[:, None] - 30 - np.float32(centre[0])) * np.float32(sy)
    dx = (np.arange(60, dtype=np.float32)[None, :] - 30 - np.float32(centre[1])) * np.float32(sx)
    share = rb.metal_fraction(dy, dx, (sy, sx))
    assert float(share.sum()) * sy * sx == pytest.approx(6.0 * 30.0, rel=1e-4)   # the bar's area, in mm2
    assert share.min() >= 0.0 and share.max() <= 1.0
    across = np.nonzero(share.max(axis=0) > 0)[0]
    assert (across.max() - across.min() + 1) * sx <= 6.0 + 2 * sx      # no wider than the bar and its edge pixels


def test_metal_streaks_skip_a_scan_without_a_spine():
    s = trunk_with_spine()
    s.hu[s.hu == 700.0] = 40.0
    assert rb.metal_streaks(s, seed=0) is None
    assert rb.skip_reason("metal_streaks").startswith("no spine")


def test_summary_says_when_the_tumor_mean_is_over_fewer_cases():
    """A case whose perturbed truth holds no tumor (a field of view that cut it out) has no tumor Dice: the row's
    mean tumor Dice was over the other cases alone while ``n`` counted every case, without a word."""
    rows = [{"case": "a", "perturbation": "fov_xy220", "liver_dice": 0.98, "tumor_dice": 0.80},
            {"case": "b", "perturbation": "fov_xy220", "liver_dice": 0.96, "tumor_dice": None},
            {"case": "a", "perturbation": "noise10", "liver_dice": 0.98, "tumor_dice": 0.70},
            {"case": "b", "perturbation": "noise10", "liver_dice": 0.96, "tumor_dice": 0.50}]
    lines = rb.summary_table(rows, ["fov_xy220", "noise10"]).splitlines()
    fov = [t for t in lines if t.strip().startswith("fov_xy220")][0]
    noise = [t for t in lines if t.strip().startswith("noise10")][0]
    assert "0.800 (1)" in fov and fov.split()[-5] == "2"  # the tumor mean's case count, n still 2
    assert "0.600 (" not in noise and "0.600" in noise  # every case measured: no count
    assert any("over the k cases with a tumor" in t for t in lines)
    lines = rb.summary_table(rows[2:], ["noise10"]).splitlines()
    assert not any("over the k cases" in t for t in lines)


def test_quiet_run_still_says_which_perturbed_volumes_segment_refused(tmp_path, monkeypatch, capsys):
    """Under --quiet a row segment refused vanished without a word (its cell '-' as a skipped row's, its mean over
    fewer cases); the refusals are now one warning line."""
    package = tiny_unet_package(tmp_path)
    write_case(tmp_path / "data")

    def fake_evaluate(engine, cases, perturbations, seed, post, trained_on, log, refused, **kwargs):
        refused.append((cases[0].case_id, "noise25", "the CT's values do not look like HU"))
        return []

    monkeypatch.setattr(rb, "evaluate", fake_evaluate)
    argv = [str(package.path), "--data", str(tmp_path / "data"), "--perturbations", "baseline,noise25"]
    assert rb.main(argv + ["--quiet"]) == 0
    err = capsys.readouterr().err
    assert "refused 1 perturbed volume(s)" in err and "noise25" in err


def test_exophytic_row_puts_tumors_half_outside_the_liver_into_soft_tissue_and_scores_that_part(tmp_path):
    """Issue 11: a tumor bulging out of the liver was found only inside it. The row's truth takes the outside part
    (label 2), only where there was fat or soft tissue, and the row says how much of that part was called tumor."""
    from scipy import ndimage

    write_case(tmp_path, shape=(24, 48, 48))  # liver on z 2..21 of 2.5 mm slices, in fat and soft tissue
    case = rb.load_bench_case(rb.find_cases(tmp_path)[0], seed=0)
    original = case.original
    shares = []
    for seed in range(3):
        sample = rb.PERTURBATIONS["exophytic"][1](case, rb.case_seed(case.case_id + "exophytic", seed))
        assert sample is not None
        tumor = sample.labels == 2
        outside = tumor & (original.labels == 0)
        assert np.array_equal(sample.outside_part, outside) and outside.any()
        assert not (outside & ((original.hu < -250) | (original.hu > 150))).any()   # never air or bone
        assert (sample.labels[original.labels >= 1] >= 1).all()   # the real liver stays liver or tumor
        _, parts = ndimage.label(tumor, np.ones((3, 3, 3)))
        assert 1 <= parts <= 2
        shares.append(np.count_nonzero(outside) / np.count_nonzero(tumor))
        # scores: the true outside part, and what a prediction called it
        predicted = original.labels.copy()              # the liver found, the tumor and its outside part missed
        row = rb.score(sample, predicted)
        voxel_ml = float(np.prod(sample.true_spacing_zyx)) / 1000.0
        assert row["outside_part_ml"] == round(np.count_nonzero(outside) * voxel_ml, 2)
        assert row["outside_part_as_tumor_ml"] == 0.0 and row["outside_part_as_liver_ml"] == 0.0
        perfect = rb.score(sample, sample.labels)
        assert perfect["outside_part_as_tumor_ml"] == perfect["outside_part_ml"] and perfect["tumor_dice"] == 1.0
    assert 0.3 <= float(np.median(shares)) <= 0.75
    assert "outside_part_ml" not in rb.score(case.sample, case.sample.labels)   # other rows: no such keys
    assert rb.EXOPHYTIC_LESIONS.exophytic_probability == 1.0 and rb.EXOPHYTIC_LESIONS.edge_probability == 1.0
    assert rb.EXOPHYTIC_LESIONS.diameter_range_mm == (25.0, 40.0)


def test_exophytic_row_applies_on_a_case_with_a_large_real_tumor(tmp_path):
    """The row's skip test divided the tumor outside the liver by all tumor, the case's own real tumors included: a
    large real tumor skipped the row on every case of a data set with tumor labels (the benchmark audit: 41-66 % of
    the inserted tumors outside the liver, 15-21 % of all tumor). The share is of the inserted tumors now."""
    write_case(tmp_path, shape=(24, 48, 48))
    case = rb.load_bench_case(rb.find_cases(tmp_path)[0], seed=0)
    seed = rb.case_seed(case.case_id + "exophytic", 0)
    alone = rb.PERTURBATIONS["exophytic"][1](case, seed)
    assert alone is not None
    labels = case.original.labels.copy()
    z, y, x = (int(v) for v in np.argwhere(labels == 1).mean(0).round())  # the liver's centre
    block = (slice(max(z - 6, 0), z + 6), slice(y - 8, y + 8), slice(x - 8, x + 8))
    labels[block][labels[block] == 1] = 2                                    # a large real tumor in the liver
    real = np.count_nonzero(labels == 2)
    assert real > 3 * np.count_nonzero(alone.labels == 2), real
    case.original = rb.replace(case.original, labels=labels)
    sample = rb.PERTURBATIONS["exophytic"][1](case, seed)
    assert sample is not None and sample.outside_part.any()


def test_exophytic_row_is_skipped_with_its_reason_where_the_liver_faces_only_air(tmp_path):
    write_case(tmp_path, shape=(24, 48, 48))
    case = rb.load_bench_case(rb.find_cases(tmp_path)[0], seed=0)
    hu = case.original.hu.copy()
    hu[case.original.labels == 0] = -1000.0
    case.original = rb.replace(case.original, hu=hu)
    assert rb.PERTURBATIONS["exophytic"][1](case, 0) is None
    assert "fat or soft tissue" in rb.skip_reason("exophytic")


def _equivalent_diameters_mm(tumor: np.ndarray, spacing_zyx) -> np.ndarray:
    """Diameter (mm) of the ball holding each 26-connected component's volume."""
    from scipy import ndimage

    components, count = ndimage.label(tumor, np.ones((3, 3, 3)))
    voxels = np.bincount(components.ravel())[1:]
    return (6.0 * voxels * float(np.prod(spacing_zyx)) / np.pi) ** (1.0 / 3.0)


def test_small_lesions_row_puts_4_to_8_lesions_of_5_to_10_mm_inside_the_liver_seeded(tmp_path):
    """Metastases are often 5-10 mm, and the benchmark's tumors were 10-40 mm: nothing measured whether small ones
    are found. The row's lesions lie wholly inside the real liver, 4-8 of them, 5-10 mm across (the ball of each
    label component's volume; margins for voxels of 1.5 x 1.5 x 2 mm), the same for the same seed."""
    write_case(tmp_path, shape=(28, 96, 96), spacing=(1.5, 1.5, 2.0))  # liver about 47 x 63 x 58 mm, 60 HU
    case = rb.load_bench_case(rb.find_cases(tmp_path)[0], seed=0)
    original = case.original
    assert rb.small_lesion_config(original.spacing_zyx) is rb.SMALL_LESIONS  # 2 mm voxels: not widened
    counts, diameters, tumor_hu = [], [], []
    for seed in range(4):
        sample = rb.PERTURBATIONS["small_lesions"][1](case, rb.case_seed(case.case_id + "small_lesions", seed))
        tumor = sample.labels == 2
        assert not (tumor & (original.labels == 0)).any()                     # inside the liver
        assert np.array_equal(sample.labels >= 1, original.labels >= 1)        # the liver's extent kept
        tumor_hu.extend(sample.hu[tumor].tolist())
        found = _equivalent_diameters_mm(tumor, original.spacing_zyx)
        assert 4 <= found.size <= 8
        counts.append(found.size)
        diameters.extend(found.tolist())
        again = rb.PERTURBATIONS["small_lesions"][1](case, rb.case_seed(case.case_id + "small_lesions", seed))
        np.testing.assert_array_equal(again.labels, sample.labels)             # seeded
        np.testing.assert_array_equal(again.hu, sample.hu)
    assert min(diameters) >= 5.0 * 0.8 and max(diameters) <= 10.0 * 1.15
    assert len(set(counts)) > 1 or len(set(np.round(diameters, 3))) > 8       # the draw differs between seeds
    assert float(np.median(tumor_hu)) < 60.0 - 10.0                          # mostly darker than the liver
    assert rb.SMALL_LESIONS.hypodense_probability == rb.BENCHMARK_LESIONS.hypodense_probability
    assert rb.SMALL_LESIONS.hypo_contrast_hu == rb.BENCHMARK_LESIONS.hypo_contrast_hu
    assert rb.SMALL_LESIONS.diameter_range_mm == (5.0, 10.0) and rb.SMALL_LESIONS.count_range == (4, 8)


def test_small_lesions_row_widens_its_lower_end_to_two_voxels_and_skips_coarser_scans(tmp_path):
    """A 5 mm ball on 3 mm voxels holds about 2 voxels: the row's smallest lesion is two voxels across there (6-10
    mm), and scans with voxels over 3.75 mm on a side (5 mm slices) are skipped with the reason."""
    assert rb.small_lesion_config((2.0, 0.98, 0.98)).diameter_range_mm == (5.0, 10.0)
    assert rb.small_lesion_config((3.0, 3.0, 3.0)).diameter_range_mm == (6.0, 10.0)
    assert rb.small_lesion_config((3.75, 0.7, 0.7)).diameter_range_mm == (7.5, 10.0)
    assert rb.small_lesion_config((5.0, 0.7, 0.7)) is None and rb.small_lesion_config((1.0, 4.0, 4.0)) is None
    write_case(tmp_path, shape=(24, 48, 48))  # 3 x 3 x 2.5 mm voxels: 6-10 mm
    case = rb.load_bench_case(rb.find_cases(tmp_path)[0], seed=0)
    sample = rb.PERTURBATIONS["small_lesions"][1](case, 5)
    found = _equivalent_diameters_mm(sample.labels == 2, sample.spacing_zyx)
    assert 1 <= found.size <= 8 and max(found) <= 10.0 * 1.2
    thick = rb.replace(case.original, spacing_zyx=(5.0, 3.0, 3.0), true_spacing_zyx=(5.0, 3.0, 3.0))
    assert rb.PERTURBATIONS["small_lesions"][1](rb.BenchCase("t", "t", thick, thick), 0) is None
    assert "3.75 mm" in rb.skip_reason("small_lesions")


def test_adding_the_small_lesions_row_left_the_other_rows_tumors_unchanged(tmp_path):
    """Digests of the tumor rows' labels on the phantom, computed with the code before the small_lesions row
    (commit 86291b05): the row draws from its own seed and config only."""
    import hashlib

    write_case(tmp_path, shape=(24, 48, 48))
    case = rb.load_bench_case(rb.find_cases(tmp_path)[0], seed=0)
    expected = {("baseline", 0): "7a740c4cec55b131", ("hyperdense", 0): "cc87712f577c807f",
                ("hyperdense", 1): "6c5d260e1b5c3184", ("large_confluent", 0): "c4493ef03eaa53d1",
                ("large_confluent", 1): "8b538320a68143b7", ("dome", 0): "10d4ffc85feefb7c",
                ("dome", 1): "7648efcc4e3e1272", ("exophytic", 0): "636a39a088915036",
                ("exophytic", 1): "a38c8f1c1fe54954"}
    for (name, seed), digest in expected.items():
        sample = rb.PERTURBATIONS[name][1](case, rb.case_seed(case.case_id + name, seed))
        assert hashlib.sha256(sample.labels.tobytes()).hexdigest()[:16] == digest, (name, seed)
