"""segment_file and `livertumorseg segment`: geometry of written labels, outputs checked before work, atomic
writes (cancel/failure leave nothing), one-line errors, CPU fallback, --sample."""
import argparse
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from LiverTumorSegLib import resources  # noqa: E402
from LiverTumorSegLib.cli import main  # noqa: E402
from LiverTumorSegLib.commands.segment import liver_dice, postprocessing_from_args  # noqa: E402
from LiverTumorSegLib.errors import CancelledError, InputError, OutputExistsError  # noqa: E402
from LiverTumorSegLib.inference import segmenter as segmenter_module  # noqa: E402
from LiverTumorSegLib.inference.api import segment_file  # noqa: E402
from LiverTumorSegLib.inference.engine import SliceInferenceEngine  # noqa: E402
from LiverTumorSegLib.inference.postprocess import PostprocessingOptions  # noqa: E402
from LiverTumorSegLib.io import read_label_map, read_volume, write_volume  # noqa: E402
from LiverTumorSegLib.progress import CancellationToken  # noqa: E402

from inference_helpers import (ORIENTATIONS, corner_phantom, oracle_package, oracle_predictor,  # noqa: E402
                               reoriented, tiny_unet_package)


def oracle_engine(predictor=oracle_predictor):
    return SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=4, batch_predictor=predictor)


def write_phantom(tmp_path, orientation, name="ct.nii.gz"):
    ph = corner_phantom()
    volume, expected = reoriented(ph.ct, ph.labels, *ORIENTATIONS[orientation])
    path = write_volume(tmp_path / name, volume)
    return path, expected


def folder_files(folder):
    return sorted(p.name for p in Path(folder).iterdir())


@pytest.mark.parametrize("orientation,out_name", [("RAS", "seg.nii.gz"), ("permuted", "seg.nrrd"), ("LPS", "seg.mha")])
def test_written_labels_match_input_geometry(tmp_path, orientation, out_name):
    ct_path, expected = write_phantom(tmp_path, orientation)
    result = segment_file(ct_path, tmp_path / out_name, engine=oracle_engine(), report_path=tmp_path / "r.json",
                          preview_path=tmp_path / "p.png", postprocessing=PostprocessingOptions(min_lesion_ml=0))
    written = read_label_map(tmp_path / out_name, reference=read_volume(ct_path))
    np.testing.assert_array_equal(written.array, expected)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["lesion_count"] == 1 and "centroid_lps_mm" in report["lesions"][0]
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert result.output_path == tmp_path / out_name
    assert not [n for n in folder_files(tmp_path) if ".tmp" in n]


def test_existing_output_refused_before_any_work(tmp_path):
    ct_path, _ = write_phantom(tmp_path, "LPS")
    out = tmp_path / "seg.nii.gz"
    out.write_bytes(b"previous")
    calls = []

    def predictor(x):
        calls.append(1)
        return oracle_predictor(x)

    with pytest.raises(OutputExistsError, match="overwrite=True"):  # Python wording from Python (issue 14)
        segment_file(ct_path, out, engine=oracle_engine(predictor))
    assert calls == [] and out.read_bytes() == b"previous"
    segment_file(ct_path, out, engine=oracle_engine(predictor), overwrite=True)
    assert calls and out.read_bytes() != b"previous"


def test_cancel_and_failure_leave_previous_file_and_no_partial(tmp_path):
    ct_path, _ = write_phantom(tmp_path, "RAS")
    out = tmp_path / "seg.nii.gz"
    out.write_bytes(b"previous")
    before = folder_files(tmp_path)
    token = CancellationToken()

    def cancelling(x):
        token.cancel()
        return oracle_predictor(x)

    with pytest.raises(CancelledError):
        segment_file(ct_path, out, engine=oracle_engine(cancelling), overwrite=True, cancel=token,
                     report_path=tmp_path / "r.json")

    def failing(x):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        segment_file(ct_path, out, engine=oracle_engine(failing), overwrite=True)
    assert out.read_bytes() == b"previous" and folder_files(tmp_path) == before


def test_output_checks(tmp_path, monkeypatch):
    ct_path, _ = write_phantom(tmp_path, "LPS")
    with pytest.raises(InputError, match="unsupported extension"):
        segment_file(ct_path, tmp_path / "seg.png", engine=oracle_engine())
    for outputs in ({"output_path": tmp_path / "SEG.MHA"},  # no ITK-based program opens it: refused before the run
                    {"output_path": tmp_path / "seg.nii.gz", "probability_path": tmp_path / "PROB.MHA"}):
        with pytest.raises(InputError, match="lower-case extension .mha"):
            segment_file(ct_path, engine=oracle_engine(), **outputs)
    with pytest.raises(InputError, match="does not exist"):
        segment_file(ct_path, tmp_path / "missing_dir" / "seg.nii.gz", engine=oracle_engine())
    with pytest.raises(InputError, match="different"):
        segment_file(ct_path, ct_path, engine=oracle_engine(), overwrite=True)
    with pytest.raises(InputError, match=".png"):
        segment_file(ct_path, tmp_path / "s.nii.gz", engine=oracle_engine(), preview_path=tmp_path / "x.json")
    monkeypatch.setattr(segmenter_module, "slicer_available", lambda: False)
    with pytest.raises(InputError, match="pip install slicer-core"):
        segment_file(ct_path, tmp_path / "seg.seg.nrrd", engine=oracle_engine())


def test_seg_nrrd_output_with_slicer(tmp_path):
    pytest.importorskip("slicer")
    ct_path, expected = write_phantom(tmp_path, "RAS")
    segment_file(ct_path, tmp_path / "seg.seg.nrrd", engine=oracle_engine(),
                 postprocessing=PostprocessingOptions(min_lesion_ml=0))
    assert (tmp_path / "seg.seg.nrrd").stat().st_size > 0


def test_liver_dice_known_values():
    a = np.array([0, 1, 1, 2, 0])
    b = np.array([0, 1, 0, 1, 1])
    assert liver_dice(a, b) == pytest.approx(2 * 2 / (3 + 3))
    assert liver_dice(np.zeros(3), np.zeros(3)) == 1.0


def test_postprocessing_from_args():
    ns = argparse.Namespace(no_postprocess=False, keep_all_liver_components=True, no_fill_holes=False,
                            allow_tumor_outside_liver=False, min_lesion_ml=0.5)
    opts = postprocessing_from_args(ns)
    assert not opts.largest_liver_component and opts.fill_liver_holes and opts.min_lesion_ml == 0.5
    ns.no_postprocess = True  # with settings given beside it: refused (they were dropped without a word)
    with pytest.raises(InputError, match="--no-postprocess turns every post-processing step off"):
        postprocessing_from_args(ns)
    bare = argparse.Namespace(no_postprocess=True, keep_all_liver_components=False, no_fill_holes=False,
                              allow_tumor_outside_liver=False, min_lesion_ml=None)  # not typed
    assert postprocessing_from_args(bare) == PostprocessingOptions.disabled()
    ns.min_lesion_ml = -1
    with pytest.raises(InputError):
        postprocessing_from_args(ns)


# ------------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def tiny_package(tmp_path_factory):
    return tiny_unet_package(tmp_path_factory.mktemp("pkg")).path


def run_cli(*argv):
    return main(["segment", *[str(a) for a in argv], "--no-progress"])


def test_cli_segments_with_package_and_cpu_fallback(tmp_path, tiny_package, capsys, monkeypatch):
    import torch

    ct_path, _ = write_phantom(tmp_path, "RAS")
    out = tmp_path / "seg.nii.gz"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = run_cli(ct_path, "-o", out, "--model", tiny_package, "--device", "cuda", "--report", tmp_path / "r.csv",
                   "--batch-size", "4")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "wrote" in captured.out and "liver volume" in captured.out
    written = read_label_map(out, reference=read_volume(ct_path))
    assert written.array.shape == read_volume(ct_path).shape_zyx
    assert (tmp_path / "r.csv").read_text().startswith("id,volume_ml,")  # plain CSV header, no # lines
    assert run_cli(ct_path, "-o", out, "--model", tiny_package) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_a_nifti_without_orientation_gets_outputs_without_one(tmp_path, tiny_package):
    """A NIfTI whose sform and qform codes are 0 is placed one way by nibabel (its base affine) and another by ITK
    and 3D Slicer (identity at origin 0). The label map was written with the base affine and code 1, so in Slicer
    it lay elsewhere than the CT (Dice 0 in the audit). NIfTI outputs now have no orientation either: every tool
    places them as it places the CT."""
    import nibabel as nib
    import SimpleITK as sitk

    from inference_helpers import without_nifti_orientation

    ct_path, _ = write_phantom(tmp_path, "RAS")
    bare_path = without_nifti_orientation(ct_path, tmp_path / "bare.nii.gz")
    out, prob = tmp_path / "seg.nii.gz", tmp_path / "p.nii"
    assert run_cli(bare_path, "-o", out, "--model", tiny_package, "--probabilities", prob) == 0
    for written in (out, prob):
        header = nib.load(str(written)).header
        assert int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0
        np.testing.assert_allclose(nib.load(str(written)).affine, nib.load(str(bare_path)).affine, atol=1e-5)
        ct_itk, out_itk = sitk.ReadImage(str(bare_path)), sitk.ReadImage(str(written))
        np.testing.assert_allclose(out_itk.GetOrigin(), ct_itk.GetOrigin(), atol=1e-5)
        np.testing.assert_allclose(out_itk.GetDirection(), ct_itk.GetDirection(), atol=1e-6)
        np.testing.assert_allclose(out_itk.GetSpacing(), ct_itk.GetSpacing(), rtol=1e-6)
    # the tool reads its own output back on the CT's grid
    assert read_label_map(out, reference=read_volume(bare_path)).shape_zyx == read_volume(bare_path).shape_zyx


def _with_disagreeing_transforms(ct_path, path):
    """``ct_path`` with sform code 2 (aligned) and a qform (code 1) moved by (40, -25, 10) mm: nibabel and this
    tool place it by the sform, ITK and 3D Slicer by the qform."""
    import nibabel as nib

    image = nib.load(str(ct_path))
    moved = image.affine.copy()
    moved[:3, 3] += (40.0, -25.0, 10.0)
    image = nib.Nifti1Image(np.asanyarray(image.dataobj), image.affine, image.header)
    image.set_sform(image.affine, code=2)
    image.set_qform(moved, code=1)
    nib.save(image, str(path))
    return path


def test_a_nifti_whose_sform_and_qform_disagree_gets_outputs_with_the_same_two(tmp_path, tiny_package):
    """The label map was written with sform = qform = the sform's geometry (codes 1): ITK and 3D Slicer, which
    take the qform when the sform code is not 1, placed the CT 48 mm away from it. Outputs now carry the input's
    two transforms and codes, so each tool lays them over the CT."""
    import nibabel as nib
    import SimpleITK as sitk

    ct_path, _ = write_phantom(tmp_path, "LPS")
    odd = _with_disagreeing_transforms(ct_path, tmp_path / "odd.nii.gz")
    assert any("sform and qform disagree" in w for w in read_volume(odd).meta["warnings"])
    out, prob = tmp_path / "seg.nii.gz", tmp_path / "p.nii"
    assert run_cli(odd, "-o", out, "--model", tiny_package, "--probabilities", prob) == 0
    ct_itk = sitk.ReadImage(str(odd))
    for written in (out, prob):
        header, ct_header = nib.load(str(written)).header, nib.load(str(odd)).header
        assert (int(header["sform_code"]), int(header["qform_code"])) == (2, 1)
        np.testing.assert_allclose(header.get_sform(), ct_header.get_sform(), atol=1e-5)
        np.testing.assert_allclose(header.get_qform(), ct_header.get_qform(), atol=1e-5)
        out_itk = sitk.ReadImage(str(written))  # where ITK (Slicer) puts each: the same place
        np.testing.assert_allclose(out_itk.GetOrigin(), ct_itk.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(out_itk.GetDirection(), ct_itk.GetDirection(), atol=1e-6)
    assert read_label_map(out, reference=read_volume(odd)).shape_zyx == read_volume(odd).shape_zyx


@pytest.mark.parametrize("case", ["missing", "corrupt", "non_hu", "bad_model"])
def test_cli_bad_inputs_give_one_line_error_and_write_nothing(tmp_path, tiny_package, capsys, case):
    ct_path, _ = write_phantom(tmp_path, "LPS")
    model = tiny_package
    if case == "missing":
        ct_path = tmp_path / "nope.nii.gz"
    elif case == "corrupt":
        ct_path = tmp_path / "corrupt.nii.gz"
        ct_path.write_bytes(b"\x1f\x8b this is not a nifti file")
    elif case == "non_hu":
        ph = corner_phantom()
        ct_path = write_volume(tmp_path / "mr.nii.gz", ph.ct.with_array((ph.ct.array > 0).astype(np.float32)))
    else:
        model = tmp_path / "model.safetensors"
        model.write_bytes(b"garbage")
    before = folder_files(tmp_path)
    code = run_cli(ct_path, "-o", tmp_path / "seg.nii.gz", "--model", model)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    assert folder_files(tmp_path) == before


def test_cli_allow_non_hu(tmp_path, tiny_package):
    ph = corner_phantom()
    ct_path = write_volume(tmp_path / "mr.nii.gz", ph.ct.with_array((ph.ct.array > 0).astype(np.float32)))
    assert run_cli(ct_path, "-o", tmp_path / "seg.nii.gz", "--model", tiny_package, "--allow-non-hu") == 0


def test_cli_needs_input_or_sample(tmp_path, capsys):
    assert run_cli("-o", tmp_path / "seg.nii.gz") == 2
    assert "--sample" in capsys.readouterr().err


def test_cli_missing_input_names_quoted_home_and_missing_folder(tmp_path, capsys, monkeypatch):
    """segment's own input check said only 'Input '~/ct.nii.gz' does not exist; check the path.', where preprocess
    (read_volume) names the quoted '~' and the missing folder, as docs/bad_inputs.md says for both."""
    monkeypatch.chdir(tmp_path)
    assert run_cli("~/no_such_ct.nii.gz", "-o", tmp_path / "seg.nii.gz") == 2
    err = capsys.readouterr().err
    assert "(its folder '~' does not exist either)" in err
    assert "a quoted '~' is not your home folder" in err
    assert run_cli(tmp_path / "no_such_ct.nii.gz", "-o", tmp_path / "seg.nii.gz") == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: Input '{tmp_path / 'no_such_ct.nii.gz'}' does not exist; check the path."
    assert not (tmp_path / "seg.nii.gz").exists()


def test_missing_input_names_files_of_a_similar_name_beside_it(tmp_path, capsys):
    """A missing CT was answered 'does not exist; check the path' alone, the file meant lying beside it under
    another extension (ct.nii written for ct.nii.gz) or one letter apart (the researcher-journey audit). segment,
    read_volume (preprocess, measure --ct), evaluate and a training CSV now name up to 3 such files; nothing close
    is named when none is."""
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.fileutil import similar_names_hint
    from LiverTumorSegLib.io import read_volume
    from LiverTumorSegLib.training.datasets import discover_cases

    data = tmp_path / "data"
    data.mkdir()
    for name in ("case_ct.nii.gz", "case_seg.nii.gz", "notes.txt"):
        (data / name).write_bytes(b"x")
    assert run_cli(data / "case_ct.nii", "-o", tmp_path / "seg.nii.gz") == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: Input '{data / 'case_ct.nii'}' does not exist (its folder holds 'case_ct.nii.gz', a name "
                   f"like it); check the path."), err
    with pytest.raises(InputError, match=r"case_cr\.nii\.gz' does not exist \(its folder holds 'case_ct\.nii\.gz'"):
        read_volume(data / "case_cr.nii.gz")
    assert main(["evaluate", "--pred", str(data / "case_seg.nii"), "--ref", str(data / "case_seg.nii.gz"),
                 "-o", str(tmp_path / "eval")]) == 2
    assert "--pred '" + str(data / "case_seg.nii") + "' does not exist (its folder holds 'case_seg.nii.gz'" in \
        capsys.readouterr().err
    (tmp_path / "cases.csv").write_text("image,label\ndata/case_ct.nii,data/case_seg.nii.gz\n")
    with pytest.raises(InputError, match=r"line 2: image .*case_ct\.nii' does not exist \(its folder holds "
                                         r"'case_ct\.nii\.gz', a name like it\)\."):
        discover_cases(tmp_path / "cases.csv")
    assert similar_names_hint(data / "unrelated.nii.gz") == ""
    assert similar_names_hint(tmp_path / "no_folder" / "case_ct.nii") == ""
    assert similar_names_hint(data / "case_ct.nii", most_entries=2) == ""  # a huge folder is not listed whole


NUMBER = re.compile(r"\d+(?:\.\d+)?")


def readme_quick_start_printout():
    """The lines README's Quick start says its main command prints (stdout and stderr)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- main-command -->\n```bash\n.*?```\n\nIt prints[^`]*```\n(.*?)\n```", readme,
                      flags=re.DOTALL)
    assert match, "README's Quick start output block moved: update this test"
    return match.group(1).splitlines()


def printout_differences(quoted, printed):
    """Quoted lines with no printed line alike: the same text, each number within max(0.002, 0.1 %) of the quoted
    one (the last bf16 digits differ between CPUs); the ``wrote`` line's run facts (seconds, threads, precision)
    are the machine's and only its start is compared."""
    differences = []
    for said in quoted:
        if said.startswith("wrote "):
            ok = any(line.startswith(said.split("(")[0] + "(") for line in printed)
        else:
            ok = False
            for line in printed:
                if NUMBER.sub("#", line) == NUMBER.sub("#", said):
                    pairs = zip(map(float, NUMBER.findall(said)), map(float, NUMBER.findall(line)))
                    ok = ok or all(abs(a - b) <= max(0.002, 0.001 * abs(a)) for a, b in pairs)
        if not ok:
            differences.append(said)
    return differences


def test_printout_differences_finds_a_changed_line_and_number():
    printed = ["wrote seg.nii.gz (9.9 s on cpu (1 thread, torch, fp32))", "liver volume: 1147.6 mL", "Dice: 0.975"]
    quoted = ["wrote seg.nii.gz (4.1 s on cpu (2 threads, torch, bf16))", "liver volume: 1147.7 mL", "Dice: 0.979",
              "report: r.json"]
    assert printout_differences(quoted, printed) == ["Dice: 0.979", "report: r.json"]


def test_cli_sample_prints_liver_dice(tmp_path, capsys, caplog, monkeypatch):
    """README's Quick start command, run as written there (in a scratch folder), prints what README says it does."""
    from bundled_model_helpers import bundled_default_model_or_skip

    bundled_default_model_or_skip()  # a damaged bundled package fails, not skips
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "sample_seg.nii.gz"
    # default backend: torch
    assert run_cli("--sample", "-o", "sample_seg.nii.gz", "--report", "sample_report.json", "--overwrite") == 0
    captured = capsys.readouterr()
    text = captured.out
    assert "liver Dice" in text
    dice = float(text.split("liver Dice vs bundled reference:")[1].split()[0])
    # 0.979 with v10 (bf16 and fp32); issues 11 and 13 ask >= 0.97 / 0.975. A hole-filling slip that gave 0.970
    # passed the earlier '> 0.9'
    assert dice >= 0.975
    assert read_label_map(out, reference=read_volume(resources.sample_ct_path())).array.max() >= 1
    # the warnings are logged (on stderr outside pytest, whose log capture takes them here)
    printed = (captured.out + captured.err).splitlines() + caplog.messages
    assert printout_differences(readme_quick_start_printout(), printed) == []


def test_probability_map_written_in_input_geometry_and_read_by_evaluate(tmp_path, capsys):
    ct_path, expected = write_phantom(tmp_path, "permuted")
    prob_path = tmp_path / "prob.nii.gz"
    result = segment_file(ct_path, tmp_path / "seg.nii.gz", engine=oracle_engine(), probability_path=prob_path,
                          postprocessing=PostprocessingOptions.disabled())
    assert result.probability_path == prob_path
    import nibabel

    assert nibabel.load(str(prob_path)).get_data_dtype() == np.uint8  # one byte per voxel on disk
    written = read_volume(prob_path)
    np.testing.assert_array_equal(written.array, np.where(expected == 2, 255, 0))
    np.testing.assert_allclose(written.geometry.ijk_to_ras(), read_volume(ct_path).geometry.ijk_to_ras())
    # two-stage gives the same map here (the oracle is exact; outside the crop the probability is 0)
    two = segment_file(ct_path, tmp_path / "seg2.nii.gz", engine=oracle_engine(), two_stage=True,
                       probability_path=tmp_path / "prob2.nii.gz", postprocessing=PostprocessingOptions.disabled())
    np.testing.assert_array_equal(two.tumor_probability, written.array)
    # evaluate --prob reads the uint8 map as 255 x p: a perfect tumor score -> AUC 1
    (tmp_path / "ref.nii.gz").write_bytes((tmp_path / "seg.nii.gz").read_bytes())  # one file for both is refused
    code = main(["evaluate", "--pred", str(tmp_path / "seg.nii.gz"), "--ref", str(tmp_path / "ref.nii.gz"),
                 "-o", str(tmp_path / "ev"), "--prob", str(prob_path)])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["roc_pooled"]["auc"] == pytest.approx(1.0)
    with pytest.raises(InputError, match="unsupported extension"):
        segment_file(ct_path, tmp_path / "s3.nii.gz", engine=oracle_engine(), probability_path=tmp_path / "p.png")
    with pytest.raises(InputError, match="different"):
        segment_file(ct_path, tmp_path / "s3.nii.gz", engine=oracle_engine(),
                     probability_path=tmp_path / "s3.nii.gz")


def test_cli_bad_batch_size_fails_before_reading_input(tmp_path, capsys, monkeypatch):
    from LiverTumorSegLib import io as io_module

    def no_read(*args, **kwargs):
        raise AssertionError("the CT must not be read when the options are invalid")

    monkeypatch.setattr(io_module, "read_volume", no_read)
    assert run_cli("--sample", "-o", tmp_path / "seg.nii.gz", "--batch-size", "0") == 2
    assert "--batch-size must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "seg.nii.gz").exists()
    # no upper bound: 10,000,000 allocated 115 GiB for a 112-slice CT, a 23-digit value was an internal error
    for huge in ("10000000", "99999999999999999999999"):
        assert run_cli("--sample", "-o", tmp_path / "seg.nii.gz", "--batch-size", huge) == 2
        assert "at least 1 and at most 4096" in capsys.readouterr().err
    assert not (tmp_path / "seg.nii.gz").exists()


def test_segment_file_progress_is_monotone_through_all_stages_and_ends_at_one(tmp_path):
    ct_path, _ = write_phantom(tmp_path, "RAS")
    seen = []
    segment_file(ct_path, tmp_path / "seg.nii.gz", engine=oracle_engine(), report_path=tmp_path / "r.json",
                 two_stage=True, progress=lambda f, s: seen.append((f, s)))
    fractions = [f for f, _ in seen]
    assert all(b >= a for a, b in zip(fractions, fractions[1:])), fractions
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    stages = [s for _, s in seen]
    for stage in ("reading", "network", "post-processing", "lesion report", "writing"):
        assert stage in stages
    assert [f for f, s in seen if s == "done"] == [1.0]  # "done" only at the very end (issue 14)
    order = ["reading", "preprocessing", "network", "post-processing", "lesion report", "writing", "done"]
    assert [order.index(s) for s in stages] == sorted(order.index(s) for s in stages)  # stages never go back


def test_messages_from_the_model_load_and_batch_threads_name_command_line_flags(tmp_path, capsys):
    """The model loads on a worker thread (beside the read), which did not inherit the CLI's wording: the --tta
    refusal told a command-line user to 'Run without tta=True'. Batch cases are read and finished on threads too."""
    sample = Path(resources.sample_ct_path())
    assert main(["segment", str(sample), "-o", str(tmp_path / "x.nii.gz"), "--tta", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Run without --tta" in err and "tta=True" not in err
    assert not (tmp_path / "x.nii.gz").exists()
    # the batch's reader and finisher threads are submitted the same way
    import concurrent.futures

    from LiverTumorSegLib.errors import cli_wording, option_hint, submit_in_caller_context
    with concurrent.futures.ThreadPoolExecutor(1) as pool, cli_wording():
        assert submit_in_caller_context(pool, option_hint, "--keep-tubular-lesions", "x=False").result() == \
            "--keep-tubular-lesions"
        assert pool.submit(option_hint, "--keep-tubular-lesions", "x=False").result() == "x=False"  # the defect


@pytest.mark.parametrize("overwrite", ["no", "false", 0, None])
def test_api_overwrite_must_be_a_bool_and_never_replaces_a_file_otherwise(tmp_path, tiny_package, overwrite):
    """overwrite='no' is truthy: segment_file replaced the user's file with a label map."""
    ct_path, _ = write_phantom(tmp_path, "RAS")
    precious = tmp_path / "seg.nii.gz"
    precious.write_bytes(b"precious")
    with pytest.raises(InputError, match="overwrite must be True or False"):
        segment_file(ct_path, precious, model=str(tiny_package), device="cpu", overwrite=overwrite)
    assert precious.read_bytes() == b"precious"


def test_segment_file_seconds_cover_the_whole_run(tmp_path, tiny_package, monkeypatch):
    """'wrote seg.nii.gz (0.6 s ...)' and the JSON done line's seconds left out the read and the model load
    (3.5 s in all): the file run's seconds are now its whole wall time."""
    import time as time_module

    import LiverTumorSegLib.io as io_package  # segment_file imports read_volume from here when it runs

    ct_path, _ = write_phantom(tmp_path, "RAS")
    real_read = io_package.read_volume

    def slow_read(*args, **kwargs):
        time_module.sleep(0.5)
        return real_read(*args, **kwargs)

    monkeypatch.setattr(io_package, "read_volume", slow_read)
    start = time_module.perf_counter()
    result = segment_file(ct_path, tmp_path / "seg.nii.gz", model=str(tiny_package), device="cpu")
    wall = time_module.perf_counter() - start
    assert 0.5 <= result.seconds <= wall
    assert result.seconds >= result.report["timings_s"]["read"]


def test_warnings_logged_while_the_progress_bar_is_open_begin_their_own_line(tmp_path):
    """A warning logged during the run was written into the bar's line ('lesion report 95%|...| 00:10warning: The
    scan starts ...'), on a terminal and in a log file: 'grep ^warning' found none. Log lines now go through the bar,
    each on a line of its own (the interruption audit). A real run of the bundled model on the 30-slice test CT,
    whose liver reaches its last slice (a warning every run gives), with stderr a file as in a log."""
    import subprocess
    import sys

    from bundled_model_helpers import bundled_default_model_or_skip

    bundled_default_model_or_skip()
    ct = Path(__file__).resolve().parents[1] / "Data" / "example_ct_sm.nii.gz"
    with open(tmp_path / "log.txt", "wb") as log:  # bytes: the bar's blocks are UTF-8, whatever this locale says
        proc = subprocess.run([sys.executable, "-m", "LiverTumorSegLib", "segment", str(ct), "-o",
                               str(tmp_path / "seg.nii.gz"), "--threads", "1"], stderr=log, stdout=subprocess.PIPE,
                              timeout=600, cwd=str(tmp_path), env=dict(os.environ, PYTHONIOENCODING="utf-8"))
    assert proc.returncode == 0
    text = (tmp_path / "log.txt").read_bytes().decode("utf-8", "replace")
    assert "%|" in text  # the bar was drawn (it shows from half a second on)
    pieces = re.split(r"[\r\n]", text)
    warned = [p for p in pieces if "The scan starts or ends inside the liver" in p]
    assert warned and all(p.startswith("warning: ") for p in warned), warned
