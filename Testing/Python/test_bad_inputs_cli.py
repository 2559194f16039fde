"""The bad-input matrix (issue 8, item 1) through the real ``livertumorseg`` CLI.

Every bad input given to ``segment``, ``preprocess`` and ``evaluate`` must give: exit code 2, stderr whose
first line is ``error: ...`` naming the problem (one line; only the several-DICOM-series case lists the
series on the following lines, that list is the fix), no traceback without ``--debug``, and no file left
in the output folder. ``docs/bad_inputs.md`` shows the messages these tests observe; run
``LIVERTUMORSEG_BAD_INPUTS_TABLE=table.md pytest Testing/Python/test_bad_inputs_cli.py`` to regenerate
its rows.

Also: a DICOM series folder is segmented end to end with the bundled default model and the labels come
back in the DICOM's geometry.
"""
import gzip
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from evaluate_helpers import write_evaluate_folders
from stream_helpers import ReaderGone

from LiverTumorSegLib import io as lts_io
from LiverTumorSegLib.io import itk as lts_io_itk
from LiverTumorSegLib.io import nifti as lts_io_nifti
from LiverTumorSegLib import validation
from LiverTumorSegLib.cli import main
from LiverTumorSegLib.io import read_volume, write_label_map, write_volume
from LiverTumorSegLib.phantom import make_phantom
from LiverTumorSegLib.volume import CTVolume, ImageGeometry

REPO = Path(__file__).resolve().parents[2]
SAMPLE_CT = REPO / "Testing" / "Data" / "example_ct_sm.nii.gz"
TABLE_ENV = "LIVERTUMORSEG_BAD_INPUTS_TABLE"
OBSERVED: Dict[Tuple[str, str], str] = {}  # (input name, command) -> first stderr line


# ------------------------------------------------------------------------------------------- inputs
def _phantom():
    return make_phantom(shape_zyx=(6, 40, 40), spacing_xyz=(2.0, 2.0, 4.0), lesions=[], seed=1)


def _nifti(path: Path, data_xyz: np.ndarray, zooms=(2.0, 2.0, 4.0)) -> Path:
    affine = np.diag(list(zooms[:3]) + [1.0])
    image = nib.Nifti1Image(data_xyz, affine)
    nib.save(image, str(path))
    return path


def _ct_like(path: Path, array_zyx: np.ndarray, spacing_xyz=(2.0, 2.0, 4.0)) -> Path:
    ph = _phantom()
    geometry = ImageGeometry(spacing=spacing_xyz, origin=ph.ct.geometry.origin, direction=ph.ct.geometry.direction)
    return write_volume(path, CTVolume(array=array_zyx, geometry=geometry))


def _dicom_series(folder: Path, hu_zyx: np.ndarray, uid: str, description: str, spacing_xyz=(2.0, 2.0, 4.0),
                  origin=(-40.0, -30.0, 100.0), prefix: str = "s", modality: str = "CT",
                  posterior_shift_per_slice: float = 0.0) -> Path:
    """Write ``hu_zyx`` (int16 HU) as an axial CT series (LPS, identity direction), one file per slice; each
    slice ``posterior_shift_per_slice`` mm further posterior than the one before (a gantry tilt)."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(hu_zyx.shape[0]):
        sl = sitk.GetImageFromArray(hu_zyx[k].astype(np.int16))
        sl.SetSpacing(tuple(float(s) for s in spacing_xyz[:2]))
        position = (origin[0], origin[1] + k * posterior_shift_per_slice, origin[2] + k * spacing_xyz[2])
        tags = {"0008|0060": modality, "0020|000d": "1.2.826.0.1.3680043.2.1125.7", "0020|000e": uid,
                "0008|103e": description, "0020|0011": "1",
                "0020|0032": "\\".join(f"{v:.6f}" for v in position),
                "0020|0037": "1\\0\\0\\0\\1\\0", "0018|0050": f"{spacing_xyz[2]:g}",
                "0028|1053": "1", "0028|1052": "0", "0020|0013": str(k + 1), "0008|0018": f"{uid}.{k + 1}"}
        for tag, value in tags.items():
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{prefix}{k:03d}.dcm"))
        writer.Execute(sl)
    return folder


def make_missing(d: Path) -> Path:
    return d / "no_such_scan.nii.gz"


def make_missing_beside_a_similar_name(d: Path) -> Path:
    (d / "scan.nii.gz").write_bytes(b"x")  # never read: the path given is 'scan.nii'
    return d / "scan.nii"


def make_folder_without_dicom(d: Path) -> Path:
    (d / "scans").mkdir()
    (d / "scans" / "notes.txt").write_text("no images here")
    return d / "scans"


def make_two_series(d: Path) -> Path:
    hu = _phantom().ct.array
    _dicom_series(d / "study", hu, "1.2.826.0.1.3680043.2.1125.7.1", "venous", prefix="a")
    _dicom_series(d / "study", hu, "1.2.826.0.1.3680043.2.1125.7.2", "arterial", prefix="b")
    return d / "study"


def make_truncated_nii_gz(d: Path) -> Path:
    full = write_volume(d / "full.nii.gz", _phantom().ct)
    blob = full.read_bytes()
    full.unlink()
    (d / "truncated.nii.gz").write_bytes(blob[: len(blob) // 2])
    return d / "truncated.nii.gz"


def make_corrupt_nii_gz(d: Path) -> Path:
    (d / "corrupt.nii.gz").write_bytes(b"\x1f\x8b" + b"not a gzip stream" * 40)
    return d / "corrupt.nii.gz"


def make_png(d: Path) -> Path:
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((16, 16), np.uint8)), str(d / "photo.png"))
    return d / "photo.png"


def make_2d_nifti(d: Path) -> Path:
    return _nifti(d / "slice.nii.gz", np.zeros((16, 16), np.int16))


def make_4d(d: Path) -> Path:
    data = np.stack([_phantom().ct.array.T] * 2, axis=-1)
    return _nifti(d / "timeseries.nii.gz", data)


def make_rgb(d: Path) -> Path:
    rgb = np.zeros((8, 8, 4), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    return _nifti(d / "rgb.nii.gz", rgb)


def make_zero_bytes(d: Path) -> Path:
    (d / "empty.nii.gz").write_bytes(b"")
    return d / "empty.nii.gz"


def make_zero_size(d: Path) -> Path:
    return _nifti(d / "zero.nii", np.zeros((16, 16, 0), np.int16))


def make_constant(d: Path) -> Path:
    return _ct_like(d / "constant.nii.gz", np.full((6, 40, 40), -1000, np.int16))


def make_air_only(d: Path) -> Path:
    arr = np.full((6, 40, 40), -1000, np.int16)
    arr[2:4, 10:20, 10:20] = -990                           # a span under 20 HU: was called 'z-scored' data
    return _ct_like(d / "air_only.nii.gz", arr)


def make_nan(d: Path) -> Path:
    arr = _phantom().ct.array.astype(np.float32)
    arr[2, 10, 10] = np.nan
    arr[3, 5, 5] = np.inf
    return _ct_like(d / "nan.nii.gz", arr)


def make_unit_range(d: Path) -> Path:
    arr = (_phantom().ct.array.astype(np.float32) + 1024.0) / 4096.0
    return _ct_like(d / "normalised_0_1.nii.gz", np.clip(arr, 0, 1))


def make_byte_range(d: Path) -> Path:
    arr = np.clip((_phantom().ct.array.astype(np.float32) + 160.0) / 400.0 * 255.0, 0, 255).astype(np.uint8)
    return _ct_like(d / "windowed_0_255.nii.gz", arr)


def make_label_map_as_ct(d: Path) -> Path:
    return _ct_like(d / "case_liver.nii.gz", make_phantom(shape_zyx=(6, 40, 40), spacing_xyz=(2.0, 2.0, 4.0),
                                                          seed=1).labels)


def make_mr_like(d: Path) -> Path:
    # not the CT + 1000 it was: that is a CT stored without its intercept, now named as one (make_raw_ct)
    arr = np.clip((_phantom().ct.array.astype(np.int32) + 1000) * 3 // 2, 0, 3000).astype(np.int16)
    return _ct_like(d / "mr_like.nii.gz", arr)


def make_raw_ct(d: Path) -> Path:
    """The real sample CT stored without its rescale intercept: HU + 1024, 0..4095 (its padding at 0)."""
    sample = read_volume(SAMPLE_CT)
    raw = np.clip(sample.array.astype(np.int32) + 1024, 0, 4095).astype(np.uint16)
    return write_volume(d / "raw_ct.nii.gz", CTVolume(array=raw, geometry=sample.geometry))


def _scaled_sample(path: Path, factor: float) -> Path:
    """The real sample CT (its air has a scanner's noise) with its HU multiplied by ``factor``."""
    sample = read_volume(SAMPLE_CT)
    write_volume(path, CTVolume(array=(sample.array.astype(np.float32) * factor).astype(np.int16),
                                geometry=sample.geometry))
    return path


def make_scaled_up(d: Path) -> Path:
    return _scaled_sample(d / "hu_times_4.nii.gz", 4.0)


def make_scaled_down(d: Path) -> Path:
    return _scaled_sample(d / "hu_times_half.nii.gz", 0.5)


def make_absurd_spacing(d: Path) -> Path:
    return _ct_like(d / "spacing_50mm.nii.gz", _phantom().ct.array, spacing_xyz=(50.0, 50.0, 4.0))


def _nrrd_with_space_directions(path: Path, directions: bytes) -> Path:
    """The phantom CT as NRRD with its 'space directions' header line replaced by ``directions``."""
    write_volume(path, _phantom().ct)
    text = path.read_bytes().replace(b"space directions: (2,0,0) (0,2,0) (0,0,4)", b"space directions: " + directions)
    assert directions in text, "NRRD header layout changed; update this test"
    path.write_bytes(text)
    return path


def make_zero_spacing(d: Path) -> Path:
    return _nrrd_with_space_directions(d / "spacing_0.nrrd", b"(0,0,0) (0,2,0) (0,0,4)")


def make_pixdim_zero(d: Path) -> Path:
    """NIfTI with only a qform and pixdim x = 0 (nibabel would silently use 1 mm); the byte is patched in, since
    nibabel repairs pixdim when saving."""
    import struct

    image = nib.Nifti1Image(_phantom().ct.array.T.astype(np.int16), None)
    image.header.set_qform(np.diag([2.0, 2.0, 4.0, 1.0]), code=1)
    image.header.set_sform(None, code=0)
    path = d / "pixdim_0.nii"
    nib.save(image, str(path))
    blob = bytearray(path.read_bytes())
    assert struct.unpack("<f", bytes(blob[80:84]))[0] == 2.0, "NIfTI-1 pixdim[1] lies at byte 80"
    blob[80:84] = struct.pack("<f", 0.0)
    path.write_bytes(bytes(blob))
    return path


def make_nan_origin(d: Path) -> Path:
    affine = np.diag([2.0, 2.0, 4.0, 1.0])
    affine[0, 3] = np.nan
    image = nib.Nifti1Image(_phantom().ct.array.T.astype(np.int16), None)
    image.header.set_sform(affine, code=1)
    image.header.set_qform(np.diag([2.0, 2.0, 4.0, 1.0]), code=0)
    nib.save(image, str(d / "nan_origin.nii.gz"))
    return d / "nan_origin.nii.gz"


def make_inf_origin(d: Path) -> Path:
    image = nib.Nifti1Image(_phantom().ct.array.T.astype(np.int16), None)
    image.header.set_qform(np.diag([2.0, 2.0, 4.0, 1.0]), code=1)
    image.header.set_sform(None, code=0)
    image.header["qoffset_x"] = np.inf
    nib.save(image, str(d / "inf_origin.nii.gz"))
    return d / "inf_origin.nii.gz"


def make_dicom_same_position(d: Path) -> Path:
    """6 DICOM slices that all share one ImagePositionPatient (ITK would invent 1 mm spacing)."""
    return _dicom_series(d / "same_position", _phantom().ct.array, "1.2.826.0.1.3680043.2.1125.7.5", "stacked",
                         spacing_xyz=(2.0, 2.0, 0.0))


def make_dicom_tilted(d: Path) -> Path:
    """A gantry-tilted series: 4 mm slices, each 1.07 mm further posterior (15 degrees)."""
    return _dicom_series(d / "tilted", _phantom().ct.array, "1.2.826.0.1.3680043.2.1125.7.7", "tilted",
                         posterior_shift_per_slice=1.0718)


def make_sheared_nrrd(d: Path) -> Path:
    """An NRRD whose slice axis leans 15 degrees against the image plane (a tilted CT saved uncorrected)."""
    return _nrrd_with_space_directions(d / "sheared.nrrd", b"(2,0,0) (0,2,0) (0,1.0718,4)")


def make_dicom_mr(d: Path) -> Path:
    """A DICOM series with Modality MR whose values happen to look like HU."""
    return _dicom_series(d / "mr_series", _phantom().ct.array, "1.2.826.0.1.3680043.2.1125.7.6", "t1 vibe",
                         modality="MR")


# name -> (maker, words the message must contain, table text of the input)
CT_CASES: Dict[str, Tuple[Callable[[Path], Path], List[str], str]] = {
    "missing": (make_missing, ["does not exist"], "path that does not exist"),
    "missing_similar": (make_missing_beside_a_similar_name, ["does not exist (its folder holds 'scan.nii.gz', a name "
                                                             "like it)"],
                        "path that does not exist, a file of a similar name beside it (`.nii` for `.nii.gz`)"),
    "no_dicom": (make_folder_without_dicom, ["holds no DICOM series"], "folder without DICOM files"),
    "two_series": (make_two_series, ["2 DICOM series", "--series"], "folder with 2 DICOM series, no `--series`"),
    "truncated": (make_truncated_nii_gz, ["truncated or corrupt"], "truncated `.nii.gz` (first half)"),
    "corrupt": (make_corrupt_nii_gz, ["Cannot read", "NIfTI"], "corrupt `.nii.gz` (not gzip data)"),
    "png": (make_png, ["is 2D", "3D CT volume is needed"], "PNG picture"),
    "2d": (make_2d_nifti, ["is 2D", "3D CT volume is needed"], "2D NIfTI (one 16 x 16 image)"),
    "4d": (make_4d, ["is 4D", "single 3D CT volume"], "4D NIfTI (2 time points)"),
    "rgb": (make_rgb, ["RGB", "scalar 3D CT"], "RGB NIfTI"),
    "zero_bytes": (make_zero_bytes, ["empty file (0 bytes)"], "0-byte file"),
    "zero_size": (make_zero_size, ["zero size"], "NIfTI with a 0-voxel axis"),
    "constant": (make_constant, ["constant", "-1000"], "all-constant volume (-1000)"),
    "air_only": (make_air_only, ["nothing denser than air", "no body", "-1000..-990"],
                 "a volume of air alone (-1000..-990)"),
    "nan": (make_nan, ["NaN/Inf"], "NaN and Inf voxels"),
    "unit_range": (make_unit_range, ["Hounsfield", "0..1", "--allow-non-hu"], "intensities 0..1 (pre-normalised)"),
    "byte_range": (make_byte_range, ["Hounsfield", "0..255", "--allow-non-hu"], "intensities 0..255 (8-bit export)"),
    "mr_like": (make_mr_like, ["Hounsfield", "MR", "--allow-non-hu"], "MR-like (all values >= 0, 0..3000)"),
    "raw_ct": (make_raw_ct, ["Hounsfield", "shifted by about +1024", "stored without its rescale intercept",
                             "HU = stored - 1024", "re-export it", "--allow-non-hu"],
               "real CT stored without its rescale intercept (HU + 1024: 0..4095, air near 0)"),
    "label_map": (make_label_map_as_ct, ["looks like a label map", "not a CT", "give the CT scan itself"],
                  "a label map (0, 1, 2) given as the CT"),
    "scaled_up": (make_scaled_up, ["Hounsfield", "rescale slope missing or applied twice", "--allow-non-hu"],
                  "real CT with its HU x 4 (a wrong rescale slope)"),
    "scaled_down": (make_scaled_down, ["Hounsfield", "multiplied by about 0.5", "--allow-non-hu"],
                    "real CT with its HU x 0.5 (a wrong rescale slope)"),
    "absurd_spacing": (make_absurd_spacing, ["spacing", "50", "over 20 mm"], "voxel spacing 50 x 50 x 4 mm"),
    "zero_spacing": (make_zero_spacing, ["invalid voxel spacing", "header"], "voxel spacing 0 mm (NRRD header)"),
    "pixdim_0": (make_pixdim_zero, ["invalid voxel spacing (0, 2, 4)"], "NIfTI pixdim x = 0 (qform only)"),
    "nan_origin": (make_nan_origin, ["non-finite", "NaN/Inf"], "NIfTI sform with a NaN origin"),
    "inf_origin": (make_inf_origin, ["non-finite", "qform", "origin"], "NIfTI qform with an infinite origin"),
    "dicom_same_position": (make_dicom_same_position, ["6 slices but only 1 distinct slice position"],
                            "DICOM series whose 6 slices share one position"),
    "sheared": (make_sheared_nrrd, ["sheared (non-orthogonal) grid", "15 degrees", "dcm2niix"],
                "NRRD with a sheared grid (slice axis 15 degrees off the normal)"),
    "dicom_tilted": (make_dicom_tilted, ["gantry-tilted", "tilt of about 15 degrees", "dcm2niix"],
                     "gantry-tilted DICOM series (each slice 1.07 mm further posterior)"),
    "dicom_mr": (make_dicom_mr, ["series of Modality MR", "--allow-non-hu"], "DICOM series with Modality MR (HU-like values)"),
}
# checks that only the CT pipeline (segment, preprocess) makes; evaluate reads label maps, and its folders are
# folders of cases (tested below), not DICOM series
CT_ONLY = {"constant", "air_only", "nan", "unit_range", "byte_range", "mr_like", "raw_ct", "scaled_up", "scaled_down",
           "absurd_spacing",
           "zero_spacing", "label_map",
           "no_dicom", "two_series", "dicom_same_position", "dicom_mr", "dicom_tilted"}


# --------------------------------------------------------------------------------------------- helpers
def run_cli(argv: List[str], capsys) -> Tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def files_under(folder: Path) -> List[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def assert_clean_error(code: int, err: str, words: List[str], multi_line_ok: bool = False) -> str:
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("warning:")]
    assert code == 2, err
    assert lines and lines[0].startswith("error: "), err
    assert "Traceback" not in err, err
    if not multi_line_ok:
        assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], f"{w!r} not in {lines[0]!r}"
    return lines[0]


def record(name: str, command: str, line: str, tmp: Path) -> None:
    OBSERVED[(name, command)] = line.replace(str(tmp), "<tmp>")


@pytest.fixture(scope="module", autouse=True)
def write_table_when_asked():
    yield
    target = os.environ.get(TABLE_ENV)
    if target:
        names = {name: text for name, (_, _, text) in CT_CASES.items()}
        names.update({name: text for name, (_, _, text) in LABEL_CASES.items()})
        names["eval_no_cases"] = "`--pred` folder with no label-map files"
        names["too_large"] = "CT too large for the memory (available memory monkeypatched to 64 MiB)"
        names["case_too_large"] = ("case whose metrics do not fit (a liver filling the grid; its maps could be read; "
                                   "64 MiB available)")
        lines = ["| input | command | what the user sees (stderr, exit code 2) |", "|---|---|---|"]
        for (name, command), message in OBSERVED.items():
            lines.append(f"| {names.get(name, name)} | `{command}` | `{message}` |")
        Path(target).write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------------- segment, preprocess
@pytest.mark.parametrize("name", list(CT_CASES))
def test_segment_bad_input(tmp_path, capsys, name):
    maker, words, _ = CT_CASES[name]
    inp = maker(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, out, err = run_cli(["segment", inp, "-o", out_dir / "seg.nii.gz", "--report", out_dir / "r.json",
                              "--preview", out_dir / "p.png", "--no-progress"], capsys)
    line = assert_clean_error(code, err, words, multi_line_ok=(name == "two_series"))
    assert files_under(out_dir) == []
    record(name, "segment", line, tmp_path)


@pytest.mark.parametrize("name", list(CT_CASES))
def test_preprocess_bad_input(tmp_path, capsys, name):
    maker, words, _ = CT_CASES[name]
    inp = maker(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, out, err = run_cli(["preprocess", inp, "-o", out_dir / "preview.png"], capsys)
    line = assert_clean_error(code, err, words, multi_line_ok=(name == "two_series"))
    assert files_under(out_dir) == []
    record(name, "preprocess", line, tmp_path)


@pytest.mark.parametrize("command", ["segment", "preprocess"])
def test_a_label_map_given_as_the_ct_is_not_told_to_pass_allow_non_hu(tmp_path, capsys, command):
    """The advice to pass --allow-non-hu made segment run on the label map and give nonsense."""
    inp = make_label_map_as_ct(tmp_path)
    code, out, err = run_cli([command, inp, "-o", tmp_path / ("seg.nii.gz" if command == "segment" else "p.png")],
                             capsys)
    line = assert_clean_error(code, err, ["looks like a label map"])
    assert "--allow-non-hu" not in line and "pre-normalised" not in line


@pytest.mark.parametrize("command", ["segment", "measure"])
def test_segments_own_probability_map_given_as_the_ct_is_named_a_probability_map(tmp_path, capsys, command):
    """segment's tumor probability map (uint8 255 x p, tagged) given as the CT was called 'a label map (a
    segmentation)' (the file-kind audit); it is named for what it is, and refused by measure --ct too, where it was
    measured as HU."""
    import numpy as np

    from LiverTumorSegLib.io import write_label_map, write_probability_map
    from LiverTumorSegLib.volume import ImageGeometry

    geometry = ImageGeometry(spacing=(1.0, 1.0, 2.0))
    probability = np.zeros((6, 20, 20), np.uint8)
    probability[2:4, 5:10, 5:10] = 230
    prob_path = write_probability_map(tmp_path / "prob.nii.gz", probability, geometry)
    labels = write_label_map(tmp_path / "labels.nii.gz", (probability > 0).astype(np.uint8) * 2 + 0, geometry)
    argv = ([command, prob_path, "-o", tmp_path / "seg.nii.gz"] if command == "segment" else
            [command, labels, "--ct", prob_path, "-o", tmp_path / "r.json"])
    code, out, err = run_cli(argv, capsys)
    line = assert_clean_error(code, err, ["is a tumor probability map (as segment --probabilities writes it), not a "
                                          "CT: give the CT scan itself"])
    assert "label map" not in line and not (tmp_path / "seg.nii.gz").exists() and not (tmp_path / "r.json").exists()


def test_measure_with_a_label_map_as_its_ct_warns_that_it_looks_like_a_label_map(tmp_path, capsys):
    inp = make_label_map_as_ct(tmp_path)
    code, out, err = run_cli(["measure", inp, "--ct", inp, "-o", tmp_path / "r.json"], capsys)
    assert code == 0, err
    assert "warning: '" in err and "looks like a label map (a segmentation), not a CT" in err, err
    assert "measured anyway" in err


def test_measure_of_an_all_background_label_map_warns_in_the_report_too(tmp_path, capsys):
    """A label map with no liver and no tumor was measured as a 0.0 mL liver without tumor, with no warning."""
    import json

    write_label_map(tmp_path / "empty.nii.gz", np.zeros((4, 8, 8), np.uint8), ImageGeometry(spacing=(1.0, 1.0, 2.0)))
    code, out, err = run_cli(["measure", tmp_path / "empty.nii.gz", "-o", tmp_path / "r.json"], capsys)
    assert code == 0, err
    assert err.count("holds no liver and no tumor") == 1
    report = json.loads((tmp_path / "r.json").read_text())
    assert any("holds no liver and no tumor" in w for w in report["warnings"])


def test_measure_whose_reader_has_gone_still_writes_its_report(tmp_path, monkeypatch):
    """`measure ... 2>&1 | head` with the reader gone before the first warning: the warning's broken pipe ended the
    command before the report was written, and the command line, taking it for the reader's choice, exited 0."""
    write_label_map(tmp_path / "empty.nii.gz", np.zeros((4, 8, 8), np.uint8), ImageGeometry(spacing=(1.0, 1.0, 2.0)))
    monkeypatch.setattr(sys, "stdout", ReaderGone())
    monkeypatch.setattr(sys, "stderr", ReaderGone())
    code = main(["measure", str(tmp_path / "empty.nii.gz"), "-o", str(tmp_path / "r.json")])
    assert code == 0 and (tmp_path / "r.json").exists()
    assert isinstance(sys.stdout, ReaderGone) and isinstance(sys.stderr, ReaderGone)  # given back as they were


class _DiskFull:
    """A text stream on a full disk (`> /dev/full`): every write is ENOSPC, naming no file."""

    def write(self, text):
        import errno

        raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self):
        pass


def test_stdout_on_a_full_disk_is_named_in_the_error(capsys, monkeypatch):
    """`livertumorseg models --json > /dev/full` said 'No space left for a file'."""
    monkeypatch.setattr(sys, "stdout", _DiskFull())
    code = main(["models", "--json"])
    assert_clean_error(code, capsys.readouterr().err, ["No space left for '<stdout>' (No space left on device)"])


@pytest.mark.parametrize("name", ["unit_range", "mr_like", "dicom_mr"])
def test_preprocess_allow_non_hu_warns_and_writes(tmp_path, capsys, name):
    maker, _, _ = CT_CASES[name]
    inp = maker(tmp_path)
    code, out, err = run_cli(["preprocess", inp, "-o", tmp_path / "preview.png", "--allow-non-hu"], capsys)
    assert code == 0, err
    assert "warning:" in err and "Hounsfield" in err
    assert (tmp_path / "preview.png").read_bytes()[:4] == b"\x89PNG"


# ------------------------------------------------------------------------------------------- evaluate
def _reference_label(d: Path) -> Path:
    ph = _phantom()
    return write_label_map(d / "ref.nii.gz", ph.labels, ph.ct.geometry)


def make_label_bad_values(d: Path) -> Path:
    ph = _phantom()
    labels = ph.labels.copy()
    labels[0, :3, :3] = 5
    return write_label_map(d / "pred_values.nii.gz", labels, ph.ct.geometry)


def make_label_probabilities(d: Path) -> Path:
    ph = _phantom()
    return write_volume(d / "pred_prob.nii.gz", ph.ct.with_array(ph.labels.astype(np.float32) * 0.4))


def make_label_wrong_shape(d: Path) -> Path:
    ph = _phantom()
    return write_label_map(d / "pred_shape.nii.gz", ph.labels[:, :30, :], ph.ct.geometry)


def make_label_wrong_geometry(d: Path) -> Path:
    ph = _phantom()
    g = ph.ct.geometry
    shifted = ImageGeometry(spacing=g.spacing, origin=(g.origin[0] + 7.5, g.origin[1], g.origin[2]),
                            direction=g.direction)
    return write_label_map(d / "pred_origin.nii.gz", ph.labels, shifted)


def make_label_wrong_spacing(d: Path) -> Path:
    ph = _phantom()
    g = ph.ct.geometry
    other = ImageGeometry(spacing=(2.0, 2.0, 5.0), origin=g.origin, direction=g.direction)
    return write_label_map(d / "pred_spacing.nii.gz", ph.labels, other)


LABEL_CASES: Dict[str, Tuple[Callable[[Path], Path], List[str], str]] = {
    "label_values": (make_label_bad_values, ["values 5 outside", "--pred-label-map"], "label map with value 5"),
    "label_probabilities": (make_label_probabilities, ["non-integer values", "integers 0..255 (0 background",
                                                       "probability map"],
                            "probability map (0.4, 0.8) given as label map"),
    "label_shape": (make_label_wrong_shape, ["does not match", "size (x, y, z) (40, 30, 6)"],
                    "label map of another size (40 x 30 x 6 vs 40 x 40 x 6)"),
    "label_origin": (make_label_wrong_geometry, ["does not match", "origin", "7.5 mm"],
                     "label map with origin shifted 7.5 mm"),
    "label_spacing": (make_label_wrong_spacing, ["does not match", "spacing"], "label map with 5 mm instead of 4 mm slices"),
}


@pytest.mark.parametrize("name", [n for n in CT_CASES if n not in CT_ONLY] + list(LABEL_CASES))
def test_evaluate_bad_prediction(tmp_path, capsys, name):
    maker, words, _ = CT_CASES[name] if name in CT_CASES else LABEL_CASES[name]
    words = [w.replace("CT volume", "label map").replace("scalar 3D CT", "scalar 3D label map") for w in words]
    pred = maker(tmp_path)
    ref = _reference_label(tmp_path)
    out_dir = tmp_path / "eval"
    code, out, err = run_cli(["evaluate", "--pred", pred, "--ref", ref, "-o", out_dir], capsys)
    line = assert_clean_error(code, err, words, multi_line_ok=(name == "two_series"))
    assert not out_dir.exists()  # not even an empty folder
    record(name, "evaluate", line, tmp_path)


def test_evaluate_into_a_folder_that_cannot_be_made_is_a_user_error(tmp_path, capsys, monkeypatch):
    """`evaluate -o /sys/ev` was an internal error (PermissionError from mkdir); a file where a folder belongs
    gives the same kind of OSError on any machine, also for root. It is refused before any case is scored (it was
    found only when the results were written, after every case's metrics)."""
    ref = _reference_label(tmp_path)
    pred = tmp_path / "pred.nii.gz"
    pred.write_bytes(ref.read_bytes())
    blocker = tmp_path / "file"
    blocker.write_text("x")
    from LiverTumorSegLib.commands import evaluate as evaluate_command

    def no_case_read_yet(*args, **kwargs):
        raise AssertionError("a case was read before the output folder was checked")

    monkeypatch.setattr(evaluate_command, "_read_labels", no_case_read_yet)
    code, out, err = run_cli(["evaluate", "--pred", pred, "--ref", ref, "-o", blocker / "eval"], capsys)
    line = assert_clean_error(code, err, ["file/eval", "check the path"])
    record15("`evaluate -o FILE/eval` (a file where a folder belongs)", line, tmp_path)


def test_evaluate_of_a_file_against_itself_is_refused(tmp_path, capsys):
    ref = _reference_label(tmp_path)
    code, out, err = run_cli(["evaluate", "--pred", ref, "--ref", ref, "-o", tmp_path / "eval"], capsys)
    line = assert_clean_error(code, err, ["are the same file", "scored against themselves (Dice 1.0)"])
    assert not (tmp_path / "eval").exists()
    record15("`evaluate` with one file as `--pred` and `--ref` (or one folder, or links to the reference's files)",
             line, tmp_path)


def test_file_system_errors_the_user_can_fix_are_worded_and_others_are_not(monkeypatch):
    import errno

    from LiverTumorSegLib.cli import file_system_error_text

    denied = file_system_error_text(PermissionError(errno.EACCES, "Permission denied", "/sys/ev"))
    assert denied == "Cannot write or read '/sys/ev' (Permission denied); choose another location or fix its permissions."
    assert "free disk space" in file_system_error_text(OSError(errno.ENOSPC, "No space left on device", "/o/x.nii"))
    assert file_system_error_text(OSError(errno.EIO, "Input/output error", "/o/x")) is None
    assert file_system_error_text(ValueError("a bug")) is None
    # Windows: the finished temporary file cannot replace an output that Excel holds open; the output is named
    held = PermissionError(errno.EACCES, "Access is denied", "C:\\out\\.cases.x1.tmp.csv", None, "C:\\out\\cases.csv")
    monkeypatch.setattr(sys, "platform", "win32")
    assert file_system_error_text(held).startswith("Cannot replace 'C:\\out\\cases.csv' (Access is denied): it is "
                                                   "probably open in another program")
    # elsewhere an open file never blocks the rename: an immutable file or a folder without write permission does
    monkeypatch.setattr(sys, "platform", "linux")
    immutable = PermissionError(errno.EPERM, "Operation not permitted", "/o/.s.tmp.nii.gz", None, "/o/s.nii.gz")
    text = file_system_error_text(immutable)
    assert text.startswith("Cannot replace '/o/s.nii.gz' (Operation not permitted): its folder's permissions or the "
                           "file's attributes") and "open in another program" not in text


def _too_large_to_write(monkeypatch) -> None:
    """Every write of text into a temporary output file fails as under `ulimit -f` (EFBIG, no file name)."""
    import errno

    real_write_text = Path.write_text

    def write_text(self, *args, **kwargs):
        if ".tmp" in self.name:
            raise OSError(errno.EFBIG, "File too large")
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)


def test_a_report_larger_than_allowed_is_a_worded_error_naming_it(tmp_path, capsys, monkeypatch):
    """`ulimit -f` (or FAT32's 4 GiB) while writing an output: 'internal error: OSError: [Errno 27] File too large
    ... please report it', exit 1, not naming the file."""
    labels = _reference_label(tmp_path)
    (tmp_path / "out").mkdir()
    _too_large_to_write(monkeypatch)
    code, out, err = run_cli(["measure", labels, "-o", tmp_path / "out" / "r.json"], capsys)
    assert_clean_error(code, err, [f"Cannot write '{tmp_path / 'out' / 'r.json'}' (File too large)", "ulimit -f"])
    assert files_under(tmp_path / "out") == []


def test_evaluate_names_the_output_it_could_not_write_not_its_staging_folder(tmp_path, capsys, monkeypatch):
    write_evaluate_folders(tmp_path, {"a": np.ones((2, 4, 4), np.uint8)}, ImageGeometry(spacing=(0.8, 0.8, 2.0)))
    _too_large_to_write(monkeypatch)
    argv = ["evaluate", "--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", tmp_path / "out", "--no-plots"]
    code, out, err = run_cli(argv, capsys)
    assert_clean_error(code, err, [f"Cannot write '{tmp_path / 'out' / 'summary.json'}' (File too large)"])
    assert not (tmp_path / "out").exists()


def test_a_full_disk_reported_without_an_error_number_is_worded_not_an_internal_error():
    """A full disk while writing a DICOM SEG (pydicom), the training slice cache (numpy) or a checkpoint
    (PyTorch) printed 'internal error ... please report it' with exit 1: none of them carries an error number."""
    from LiverTumorSegLib.cli import user_error_text

    for exc in (OSError("With tag (7FE0,0010) got exception: [Errno 28] No space left on device"),
                OSError("688128 requested and 261088 written"),
                RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 123 vs 456")):
        text = user_error_text(exc)
        assert text and text.startswith("Cannot write: ") and "free disk space" in text, exc
    assert user_error_text(OSError("unexpected pos")) is None and user_error_text(RuntimeError("a bug")) is None


def test_a_short_write_of_numpy_names_the_file_being_written(tmp_path):
    """The training slice cache on a full disk (or under `ulimit -f`): 'Cannot write: a file was written only in
    part ...' named no file."""
    from LiverTumorSegLib.cli import user_error_text
    from LiverTumorSegLib.fileutil import atomic_output

    with pytest.raises(OSError) as raised:
        with atomic_output(tmp_path / "ct0.hu.npy"):
            raise OSError("688128 requested and 261088 written")
    text = user_error_text(raised.value)
    assert text.startswith(f"Cannot write '{tmp_path / 'ct0.hu.npy'}': a file was written only in part") and \
        "ulimit -f" in text and "(688128 requested and 261088 written)" in text
    assert list(tmp_path.iterdir()) == []


def test_replacing_a_file_held_open_is_retried_on_windows(tmp_path, monkeypatch):
    """A virus scanner holds each new file for a moment: the first os.replace onto it fails, a later one works."""
    from LiverTumorSegLib import fileutil

    source, target = tmp_path / "new", tmp_path / "out"
    source.write_text("new")
    target.write_text("old")
    tries = []
    real_replace = os.replace

    def held_twice(a, b):
        tries.append(b)
        if len(tries) <= 2:
            raise PermissionError(13, "Access is denied", str(a), None, str(b))
        real_replace(a, b)

    monkeypatch.setattr(fileutil.os, "replace", held_twice)
    monkeypatch.setattr(fileutil, "REPLACE_RETRY_SECONDS", (0.0, 0.0, 0.0))
    monkeypatch.setattr(fileutil.sys, "platform", "win32")
    fileutil.replace_file(source, target)
    assert target.read_text() == "new" and len(tries) == 3
    monkeypatch.setattr(fileutil.sys, "platform", "linux")  # elsewhere a refused rename is not retried
    tries.clear()
    source.write_text("newer")
    with pytest.raises(PermissionError):
        fileutil.replace_file(source, target)
    assert len(tries) == 1


def test_evaluate_folders_without_matching_cases(tmp_path, capsys):
    (tmp_path / "pred").mkdir()
    (tmp_path / "pred" / "notes.txt").write_text("no label maps")
    (tmp_path / "ref").mkdir()
    _reference_label(tmp_path / "ref")
    code, out, err = run_cli(["evaluate", "--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o",
                              tmp_path / "eval"], capsys)
    line = assert_clean_error(code, err, ["No case name matches", "(0 files)"])
    assert not (tmp_path / "eval").exists()
    record("eval_no_cases", "evaluate", line, tmp_path)


def test_evaluate_failure_leaves_no_empty_output_folder(tmp_path, capsys):
    pred = make_label_bad_values(tmp_path)
    ref = _reference_label(tmp_path)
    code, out, err = run_cli(["evaluate", "--pred", pred, "--ref", ref, "-o", tmp_path / "eval"], capsys)
    assert code == 2
    assert not (tmp_path / "eval").exists()


def test_evaluate_bad_reference_is_named(tmp_path, capsys):
    pred = _reference_label(tmp_path)
    ref = make_label_bad_values(tmp_path)
    code, out, err = run_cli(["evaluate", "--pred", pred, "--ref", ref, "-o", tmp_path / "eval"], capsys)
    assert_clean_error(code, err, ["pred_values.nii.gz", "values 5 outside"])


# ------------------------------------------------------------------------------- too large for memory
def _refuse_voxel_loading(monkeypatch):
    """Make any read of voxel data fail loudly, so the test proves the memory check comes first."""
    def loaded(*args, **kwargs):
        raise AssertionError("voxel data was loaded before the memory check")

    for reader in (lts_io_nifti, lts_io_itk):  # the modules whose readers call to_hu_dtype on the voxels
        monkeypatch.setattr(reader, "to_hu_dtype", loaded)


@pytest.mark.parametrize("command", ["segment", "preprocess", "evaluate"])
@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_too_large_is_refused_from_the_header_before_loading(tmp_path, capsys, monkeypatch, command, suffix):
    ph = make_phantom(shape_zyx=(40, 128, 128), spacing_xyz=(1.0, 1.0, 2.0), lesions=[], seed=2)
    if command == "evaluate":
        inp = write_label_map(tmp_path / f"pred{suffix}", ph.labels, ph.ct.geometry)
        ref = write_label_map(tmp_path / "ref.nii.gz", ph.labels, ph.ct.geometry)
    else:
        inp = write_volume(tmp_path / f"big{suffix}", ph.ct)
    available = 64 << 20
    monkeypatch.setattr(validation, "available_memory_bytes", lambda *a, **k: available)
    _refuse_voxel_loading(monkeypatch)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    if command == "segment":
        argv = ["segment", inp, "-o", out_dir / "seg.nii.gz", "--no-progress"]
    elif command == "preprocess":
        argv = ["preprocess", inp, "-o", out_dir / "preview.png"]
    else:
        argv = ["evaluate", "--pred", inp, "--ref", ref, "-o", out_dir / "eval"]
    code, out, err = run_cli(argv, capsys)
    line = assert_clean_error(code, err, ["needs about", "GiB of memory", "only 0.1 GiB is available",
                                          "(40, 128, 128)"])
    needed = validation.estimate_memory_bytes((40, 128, 128), input_itemsize=2 if command != "evaluate" else 1)
    assert f"{needed / validation.GIB:.1f} GiB" in line
    assert files_under(out_dir) == []
    if suffix == ".nii.gz":
        record("too_large", command, line, tmp_path)


def _evaluate_with_memory(tmp_path, capsys, monkeypatch, cases: Dict[str, np.ndarray], available: int, prob: bool):
    """Run evaluate on ``cases`` (name -> 0/1/2 (z, y, x) map, the prediction equal to the reference) with
    ``available`` bytes of memory (monkeypatched) and every map readable; ``(code, err, cases scored)``."""
    from LiverTumorSegLib.metrics import lits

    write_evaluate_folders(tmp_path, cases, ImageGeometry(spacing=(0.8, 0.8, 2.0)),
                           {case: (labels == 2).astype(np.uint8) * 200 for case, labels in cases.items()})
    monkeypatch.setattr(validation, "available_memory_bytes", lambda *a, **k: available)
    monkeypatch.setattr(lts_io_nifti, "check_memory_for_read", lambda *a, **k: None)  # each map can be read
    scored = []
    real_evaluate_case = lits.evaluate_case
    from LiverTumorSegLib.commands.evaluate import RANK_METRIC_PROBE_CASE  # the --rank-metric check's tiny pair

    def recording_evaluate_case(*a, **k):
        if k["case"] != RANK_METRIC_PROBE_CASE:
            scored.append(k["case"])
        return real_evaluate_case(*a, **k)

    monkeypatch.setattr(lits, "evaluate_case", recording_evaluate_case)
    argv = ["evaluate", "--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", tmp_path / "out", "--no-plots"]
    code, out, err = run_cli(argv + (["--prob", tmp_path / "prob"] if prob else []), capsys)
    return code, err, scored


@pytest.mark.parametrize("prob", [False, True])
def test_evaluate_refuses_a_case_whose_metrics_do_not_fit_by_name_before_them(tmp_path, capsys, monkeypatch, prob):
    """evaluate checked only that each file could be read; the metrics of a pair then needed up to about 20 bytes a
    voxel more (surface distances, lesion labelling), and a large pair ended in a MemoryError or the out-of-memory
    killer. Each case is checked before its metrics: the error names the case, both amounts and what to do. Here a
    liver filling the grid, tumors in its opposite corners: the metrics' worst case."""
    from LiverTumorSegLib.metrics import lits

    shape = (128, 256, 256)  # 8 Mi voxels: its metrics need 0.2 GiB
    labels = np.ones(shape, np.uint8)
    labels[:4, :4, :4] = 2
    labels[-4:, -4:, -4:] = 2
    cases = {"case1": labels[:8, :16, :16], "case2": labels}  # case2, the big one, after case1
    code, err, scored = _evaluate_with_memory(tmp_path, capsys, monkeypatch, cases, 64 << 20, prob)
    needed = lits.evaluate_case_memory_bytes(labels, labels, probabilities=labels if prob else None)
    line = assert_clean_error(code, err, [
        "case 'case2' ((z, y, x) (128, 256, 256) voxels)", f"needs about {needed / validation.GIB:.1f} GiB of memory",
        "only 0.1 GiB is available", "3 bytes a voxel of its grid beside the label maps",
        "boxes holding its liver and tumors", "machine with more memory", "move it out of the --pred/--ref folders"])
    assert needed > (64 << 20) and scored == ["case1"]  # case2's metrics were not started; nothing was written
    assert not (tmp_path / "out").exists()
    if not prob:
        record("case_too_large", "evaluate", line, tmp_path)


@pytest.mark.parametrize("prob", [False, True])
def test_evaluate_scores_a_case_whose_liver_fills_a_small_box_in_the_memory_it_has(tmp_path, capsys, monkeypatch, prob):
    """The check asked 21 bytes a voxel of every case's grid, the worst case of a liver box as large as the grid,
    while a liver filling an eighth of the grid needs about 5: such a case was refused with memory to spare (63 MiB
    asked of 48 available here). The need now follows the liver and tumor boxes, and the case is scored."""
    from LiverTumorSegLib.metrics import lits

    labels = np.zeros((96, 128, 256), np.uint8)  # 3 Mi voxels, the liver in a box of 48 x 64 x 128
    labels[24:72, 32:96, 64:192] = 1
    labels[40:48, 50:60, 100:110] = 2
    available = 48 << 20
    code, err, scored = _evaluate_with_memory(tmp_path, capsys, monkeypatch, {"case1": labels}, available, prob)
    assert code == 0, err
    assert scored == ["case1"] and (tmp_path / "out" / "cases.csv").is_file()
    needed = lits.evaluate_case_memory_bytes(labels, labels, probabilities=labels if prob else None)
    assert needed < available < 21 * labels.size  # 33 (39 with --prob) MiB; 63 asked before


def test_volume_that_fits_is_read_after_the_header_check(tmp_path, monkeypatch):
    ph = _phantom()
    path = write_volume(tmp_path / "ct.nii.gz", ph.ct)
    seen = []
    monkeypatch.setattr(validation, "available_memory_bytes", lambda *a, **k: seen.append(1) or (8 << 30))
    vol = read_volume(path)
    assert seen and np.array_equal(vol.array, ph.ct.array)


# ------------------------------------------------------------------------- real process, exit status
@pytest.mark.parametrize("debug", [False, True])
def test_real_process_exit_code_and_traceback_only_with_debug(tmp_path, debug):
    bad = make_corrupt_nii_gz(tmp_path)
    argv = [sys.executable, "-m", "LiverTumorSegLib"] + (["--debug"] if debug else []) + [
        "preprocess", str(bad), "-o", str(tmp_path / "preview.png")]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert proc.returncode == 2  # a user error with --debug too (it exited 1, an internal error's code)
    if debug:
        assert "Traceback" in proc.stderr and "InputError" in proc.stderr
        assert proc.stderr.rstrip().splitlines()[-1].startswith("error: Cannot read")
    else:
        assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
        assert proc.stderr.startswith("error: Cannot read") and "Traceback" not in proc.stderr
    assert not (tmp_path / "preview.png").exists()


# ------------------------------------------------------------------------------- DICOM end to end
def _bundled_model_or_skip():
    from bundled_model_helpers import bundled_default_model_or_skip

    return bundled_default_model_or_skip()  # a damaged bundled package fails, not skips


def test_dicom_folder_segmented_end_to_end_in_dicom_geometry(tmp_path, capsys):
    pytest.importorskip("torch")
    _bundled_model_or_skip()
    import torch

    torch.set_num_threads(1)
    ct = read_volume(SAMPLE_CT)
    hu = np.clip(ct.array, -1024, 3071).astype(np.int16)
    # the sample is RAS in its file; as DICOM (LPS, identity direction) the slices are re-stored LPS
    from LiverTumorSegLib.orientation import canonicalize

    canon, _ = canonicalize(ct.with_array(hu))
    folder = _dicom_series(tmp_path / "dicom", canon.array, "1.2.826.0.1.3680043.2.1125.7.9", "sample",
                           spacing_xyz=canon.geometry.spacing, origin=canon.geometry.origin)
    out = tmp_path / "seg.nii.gz"
    code, text, err = run_cli(["segment", folder, "-o", out, "--no-progress"], capsys)
    assert code == 0, err
    assert f"wrote {out}" in text
    dicom = read_volume(folder)
    labels = lts_io.read_label_map(out, reference=dicom)  # raises when size/geometry differ
    assert labels.shape_zyx == dicom.shape_zyx == canon.shape_zyx
    assert labels.geometry.almost_equal(dicom.geometry, tol=1e-4)
    reference = lts_io.read_label_map(REPO / "Testing" / "Data" / "example_ct_sm_liver.nii.gz", reference=ct)
    ref_canon = canonicalize(reference)[0].array
    liver, ref_liver = labels.array >= 1, ref_canon >= 1
    dice = 2.0 * np.count_nonzero(liver & ref_liver) / (liver.sum() + ref_liver.sum())
    assert dice > 0.9, dice


# ====================================================================================== issue 15 probes
# Hostile model packages, model-name resolution, geometry edge cases, memory at network resolution,
# signals and paths, train. Each probe runs the real CLI entry point and expects one `error:` line, exit 2,
# no traceback and nothing left behind (or, where the input is fine, a clean run).
ISSUE15_ROWS: Dict[str, str] = {}  # input description -> first stderr line (for docs/bad_inputs.md)


def record15(what: str, line: str, tmp: Path) -> None:
    ISSUE15_ROWS[what] = line.replace(str(tmp), "<tmp>")


@pytest.fixture(scope="module", autouse=True)
def write_issue15_table_when_asked():
    yield
    target = os.environ.get(TABLE_ENV)
    if target:
        lines = ["", "| input | what the user sees (stderr, exit code 2) |", "|---|---|"]
        lines += [f"| {what} | `{message}` |" for what, message in ISSUE15_ROWS.items()]
        Path(target).with_suffix(".issue15.md").write_text("\n".join(lines) + "\n")


def _tiny_ct(d: Path) -> Path:
    return write_volume(d / "ct.nii.gz", _phantom().ct)


def _tiny_package(d: Path, name: str = "tiny", arch: str = "unet", **options) -> Path:
    import torch

    from LiverTumorSegLib.models import build_model
    from LiverTumorSegLib.package import save_model_package
    from LiverTumorSegLib.preprocessing import PreprocessingConfig

    torch.manual_seed(0)
    opts = dict(channels=(4, 8), num_res_units=1) if arch == "unet" else {}
    opts.update(options)
    model = build_model(arch, in_channels=9, num_classes=3, **opts)
    return save_model_package(d / f"{name}.safetensors", model, PreprocessingConfig.preset("default"))


def _rewrite_package(src: Path, dst: Path, change_meta=None, change_tensors=None, raw_meta=None) -> Path:
    """Copy package ``src`` to ``dst`` with its metadata dict and/or tensors changed (sha kept consistent
    with the tensors unless the change sets it; the metadata's own hash recomputed after the change, as a hostile
    package made with the library's code would have it, so that each probe meets the check it is about; a package
    of this version without it is refused by that check alone)."""
    import json

    from safetensors.torch import load_file, save_file

    from LiverTumorSegLib.package import metadata_sha256, read_safetensors_header, weights_sha256

    tensors = load_file(str(src))
    meta = json.loads(read_safetensors_header(src)["__metadata__"]["livertumorseg"])
    meta.pop("metadata_sha256", None)
    if change_tensors is not None:
        tensors = change_tensors(tensors)
        meta["weights_sha256"] = weights_sha256(tensors)
    if change_meta is not None:
        change_meta(meta)
    if "metadata_sha256" not in meta:  # not set by the change
        meta["metadata_sha256"] = metadata_sha256(meta)
    text = raw_meta(meta) if raw_meta is not None else json.dumps(meta)
    save_file(tensors, str(dst), metadata={"livertumorseg": text, "format": "pt"})
    return dst


def _deep_json(meta, depth=100000):
    import json

    text = json.dumps(meta)
    return text[:-1] + ', "robustness": ' + "[" * depth + "]" * depth + "}"


def _set_options(**values):
    return lambda m: m["architecture"]["options"].update(values)


def _set_arch(**values):
    return lambda m: m["architecture"].update(values)


def _int_weights(tensors):
    return {k: (v.round().to(dtype=__import__("torch").int32) if v.is_floating_point() else v)
            for k, v in tensors.items()}


# name -> (what, change_meta, change_tensors, raw_meta, words)
PACKAGE_PROBES = {
    "wide_8000": ("package whose metadata names a U-Net with 8,000-channel layers (1 KB of weights)",
                  _set_options(channels=[8000, 8000]), None, None,
                  ["M parameters", "more than the 200 M",  # and what to do, which it did not say
                   "such a network). The package was damaged or edited: obtain a fresh copy"]),
    "wide_100000": ("package whose metadata names 100,000-channel layers",
                    _set_options(channels=[100000, 100000]), None, None, ["channels", "numbers up to 65536"]),
    "options_list": ("package whose architecture options are a list",
                     _set_arch(options=[1, 2]), None, None, ["options must be a JSON object"]),
    "in_channels_str": ("package whose in_channels is a string",
                        _set_arch(in_channels="9"), None, None, ["in_channels must be an integer", "got '9'"]),
    "negative_channels": ("package with negative channel counts",
                          _set_options(channels=[-4, 8]), None, None,
                          ["records architecture options this library refuses",
                           "'channels' must be a list of at least 2 whole numbers >= 1", "get a fresh copy"]),
    "option_type": ("package with a string where a number belongs (num_res_units)",
                    _set_options(num_res_units="2"), None, None,
                    ["num_res_units", "like its default",  # and what to do, which it did not say
                     "got '2'. It records this version, ", "whose packages hold no such setting: it was damaged or "
                     "edited; obtain a fresh copy."]),
    "deep_json": ("package whose metadata JSON nests 100,000 levels deep",
                  None, None, _deep_json, ["nested too deeply"]),
    "deep_32": ("package whose metadata nests 40 levels deep",
                None, None, lambda m: _deep_json(m, 40), ["nested more than 32 levels"]),
    "validation_list": ("package whose `validation` is a list",
                        lambda m: m.update(validation=[1, 2]), None, None, ["'validation' must be a JSON object"]),
    "pretrained_path": ("package whose metadata names `pretrained_encoder_path` (another file)",
                        _set_options(pretrained_encoder_path="/etc/hostname"), None, None,
                        ["pretrained_encoder_path", "self-contained"]),
    "int_weights": ("package with integer (int32) weights and a matching SHA-256",
                    None, _int_weights, None, ["another type", "I32", "F32"]),
}


@pytest.mark.parametrize("name", list(PACKAGE_PROBES))
def test_hostile_package_is_refused_before_building(tmp_path, capsys, name):
    what, change_meta, change_tensors, raw_meta, words = PACKAGE_PROBES[name]
    (tmp_path / "src").mkdir()
    src = _tiny_package(tmp_path / "src")
    if name == "pretrained_path":
        src = _tiny_package(tmp_path / "src", name="resnet", arch="resnet18_fcn", width=0.125)
    bad = _rewrite_package(src, tmp_path / f"{name}.safetensors", change_meta, change_tensors, raw_meta)
    ct = _tiny_ct(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, out, err = run_cli(["segment", ct, "-o", out_dir / "seg.nii.gz", "--model", bad, "--no-progress"], capsys)
    line = assert_clean_error(code, err, words)
    assert files_under(out_dir) == []
    record15(what, line, tmp_path)


def test_tta_with_a_file_that_is_no_package_gets_the_loads_error(tmp_path, capsys):
    """--tta reads the package's header before the CT to refuse flips a model was not trained with; a header that
    cannot be read is left to the load, which says why: the same one line as without --tta, and nothing written."""
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a package at all")
    ct = _tiny_ct(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    lines = []
    for extra in ([], ["--tta"]):
        code, _, err = run_cli(["segment", ct, "-o", out_dir / "seg.nii.gz", "--model", bad, "--device", "cpu",
                                "--no-progress"] + extra, capsys)
        lines.append(assert_clean_error(code, err, ["is not a LiverTumorSeg model package", "truncated"]))
    assert lines[0] == lines[1]
    assert files_under(out_dir) == []


def test_package_pretrained_path_message_does_not_tell_whether_the_file_exists(tmp_path, capsys):
    src = _tiny_package(tmp_path, name="resnet", arch="resnet18_fcn", width=0.125)
    lines = []
    for target in ("/etc/hostname", "/no/such/file"):
        bad = _rewrite_package(src, tmp_path / "p.safetensors", _set_options(pretrained_encoder_path=target))
        from LiverTumorSegLib.errors import ModelPackageError
        from LiverTumorSegLib.package import load_model_package

        with pytest.raises(ModelPackageError) as info:
            load_model_package(bad)
        lines.append(str(info.value).replace(target, "X"))
    assert lines[0] == lines[1]


def test_package_with_huge_activations_is_refused(tmp_path, capsys, monkeypatch):
    from LiverTumorSegLib import package

    pkg = _tiny_package(tmp_path)  # saved within the limits (save_model_package refuses such a network)
    monkeypatch.setattr(package, "MAX_ACTIVATION_BYTES", 1 << 20)  # the tiny U-Net needs ~5 MiB per slice
    ct = _tiny_ct(tmp_path)
    code, out, err = run_cli(["segment", ct, "-o", tmp_path / "seg.nii.gz", "--model", pkg, "--no-progress"],
                             capsys)
    assert_clean_error(code, err, ["layer outputs for one 256 x 256 slice take", "GiB"])
    assert not (tmp_path / "seg.nii.gz").exists()


def test_package_with_robustness_table_is_accepted(tmp_path):
    from LiverTumorSegLib.package import load_model_package

    src = _tiny_package(tmp_path)
    rows = [{"perturbation": f"noise {s} HU", "dice_liver": 0.9 - 0.01 * s, "n": 3} for s in range(50)]
    ok = _rewrite_package(src, tmp_path / "robust.safetensors", lambda m: m.update(robustness={"rows": rows}))
    assert load_model_package(ok).metadata["robustness"]["rows"][3]["n"] == 3


# ----------------------------------------------------------------------------- model names, models folder
@pytest.fixture
def models_env(tmp_path, monkeypatch):
    """An empty user models folder (the bundled folder stays the repository's)."""
    user = tmp_path / "user_models"
    user.mkdir()
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(user))
    return user


def _segments_with_bundled_model(tmp_path, capsys, extra=()):
    ct = _tiny_ct(tmp_path)
    out = tmp_path / "seg.nii.gz"
    code, text, err = run_cli(["segment", ct, "-o", out, "--no-progress"] + list(extra), capsys)
    return code, text, err, out


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_default_in_working_folder_does_not_replace_bundled_model(tmp_path, capsys, monkeypatch, models_env, kind):
    _bundled_model_or_skip()
    work = tmp_path / "work"
    work.mkdir()
    if kind == "file":
        (work / "default").write_bytes(b"garbage, not a model")
    else:
        (work / "default").mkdir()
    monkeypatch.chdir(work)
    code, text, err, out = _segments_with_bundled_model(tmp_path, capsys)
    assert code == 0, err
    assert out.exists()


def test_model_name_with_a_same_named_file_is_looked_up_by_name(tmp_path, capsys, monkeypatch, models_env):
    (tmp_path / "mine").write_bytes(b"not a package")
    monkeypatch.chdir(tmp_path)
    ct = _tiny_ct(tmp_path)
    code, text, err = run_cli(["segment", ct, "-o", tmp_path / "seg.nii.gz", "--model", "mine", "--no-progress"],
                              capsys)
    line = assert_clean_error(code, err, ["No installed model named 'mine'", "./mine"])
    record15("`--model mine` while a file `mine` lies in the working folder", line, tmp_path)
    (tmp_path / "mine").unlink()
    (tmp_path / "mine").mkdir()
    code, text, err = run_cli(["segment", ct, "-o", tmp_path / "seg.nii.gz", "--model", "mine", "--no-progress"],
                              capsys)
    assert_clean_error(code, err, ["a folder 'mine' exists here", "one .safetensors file"])


@pytest.mark.parametrize("broken", ["deep_json", "validation_list", "garbage"])
def test_broken_package_in_user_folder_is_skipped_with_a_warning(tmp_path, capsys, caplog, models_env, broken):
    _bundled_model_or_skip()
    if broken == "garbage":
        (models_env / "broken.safetensors").write_bytes(b"garbage!garbage!")
    else:
        _, change_meta, change_tensors, raw_meta, _ = PACKAGE_PROBES[broken]
        src = _tiny_package(tmp_path)
        _rewrite_package(src, models_env / "broken.safetensors", change_meta, change_tensors, raw_meta)
    code, text, err = run_cli(["models"], capsys)
    assert code == 0, err
    assert "UNUSABLE" in text and "broken.safetensors" in text
    code, text, err = run_cli(["models", "--json"], capsys)
    assert code == 0, err
    code, text, err, out = _segments_with_bundled_model(tmp_path, capsys)
    assert code == 0, err
    warned = err + caplog.text  # logging goes to stderr in a real run, to caplog under pytest
    assert "warning: skipping unusable model package" in warned and "broken.safetensors" in warned
    # once in the run (the model is resolved more than once: each time warned of it again)
    assert warned.count("warning: skipping unusable model package") == 1, warned
    from LiverTumorSegLib.package import list_installed_models

    entries = list_installed_models(warn=False)
    assert [e["source"] for e in entries if e["error"]] == ["user"]


def test_json_report_never_holds_nan_or_infinity(tmp_path):
    import json

    from LiverTumorSegLib.inference.lesion_report import write_report

    path = write_report({"liver_volume_ml": float("nan"), "lesions": [{"d": float("inf")}], "n": np.float32(2)},
                        tmp_path / "r.json")
    text = path.read_text()

    def refuse(constant):
        raise AssertionError(f"{constant} in the report")

    data = json.loads(text, parse_constant=refuse)
    assert data == {"liver_volume_ml": None, "lesions": [{"d": None}], "n": 2.0}


# ------------------------------------------------------------------------- memory at network resolution
def make_coarse_pixels(d: Path, shape_zyx=(8, 512, 512), pixel_mm=19.9) -> Path:
    """A small file (int16, mostly air) whose 19.9 mm pixels become ~6800 x 6800 at the network's 1.5 mm."""
    arr = np.full(shape_zyx, -1000, np.int16)
    zz, yy, xx = np.ogrid[:shape_zyx[0], :shape_zyx[1], :shape_zyx[2]]
    body = (yy - shape_zyx[1] / 2) ** 2 + (xx - shape_zyx[2] / 2) ** 2 < (shape_zyx[1] / 3) ** 2
    arr[np.broadcast_to(body, shape_zyx)] = 40
    return _ct_like(d / f"coarse_{shape_zyx[2]}.nii.gz", arr, spacing_xyz=(pixel_mm, pixel_mm, 5.0))


@pytest.mark.parametrize("shape_zyx", [(4, 256, 256), (8, 512, 512)])
def test_coarse_pixels_are_refused_at_network_resolution(tmp_path, capsys, monkeypatch, shape_zyx):
    """The 256x256x4 CT with 19.9 mm pixels once peaked at 7.6 GB; the 512x512x8 one ended in MemoryError.
    With 4 GiB available both must be refused with the numbers, before anything is resampled."""
    _bundled_model_or_skip()
    from LiverTumorSegLib.preprocessing import spatial

    ct = make_coarse_pixels(tmp_path, shape_zyx)
    monkeypatch.setattr(validation, "available_memory_bytes", lambda *a, **k: 4 << 30)

    def no_resampling(*args, **kwargs):
        raise AssertionError("the volume was resampled before the memory check")

    monkeypatch.setattr(spatial, "resample_slices", no_resampling)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for argv in (["segment", ct, "-o", out_dir / "seg.nii.gz", "--no-progress"],
                 ["preprocess", ct, "-o", out_dir / "preview.png"]):
        code, out, err = run_cli(argv, capsys)
        side = round(shape_zyx[2] * 19.9 / 1.5)
        line = assert_clean_error(code, err, ["at the network's resolution", "19.9 x 19.9 mm pixels resampled to 1.5 mm",
                                              "only 4.0 GiB is available", f"{side + (-side) % 32})"])
        assert files_under(out_dir) == []
        if argv[0] == "segment":
            record15(f"CT of {shape_zyx[2]} x {shape_zyx[1]} x {shape_zyx[0]} voxels with 19.9 mm pixels "
                     f"(4 GiB available)", line, tmp_path)


def test_network_memory_estimate_is_modest_for_a_normal_ct():
    """A 512 x 512 x 200 CT with 0.7 mm pixels: network grid 256 x 256 (0.7 * 512 / 1.5 = 239 -> 256)."""
    from LiverTumorSegLib.preprocessing import PreprocessingConfig

    net = validation.network_grid_zyx((200, 512, 512), (2.5, 0.7, 0.7), PreprocessingConfig.preset("default"))
    assert net == (200, 256, 256)
    need = validation.estimate_network_memory_bytes((200, 512, 512), net, in_channels=9)
    native = validation.estimate_memory_bytes((200, 512, 512))
    assert native < need < native + (400 << 20)


# ------------------------------------------------------------------------------------ signals and paths
def _run_process(argv: List[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """``livertumorseg ARGV`` as a real process (a crash in ITK cannot take pytest down with it)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "LiverTumorSegLib"] + [str(a) for a in argv],
                          capture_output=True, timeout=timeout, cwd=str(cwd), env=env)


# The real-process tests of a refused input run ``preprocess``: it reads the CT as ``segment`` does (read_volume,
# under the same ``_main``), without ``segment``'s model load, which a refused input waits for (torch and MONAI
# imported for nothing: 4-5 s a test); the broken-header test keeps ``segment``, so that one real process shows that
# the load it waits for adds nothing to stderr. ``segment``'s own refusals run in-process (test_segment_bad_input).
def test_a_broken_header_gives_one_line_and_no_library_chatter(tmp_path):
    """nibabel logged its own note of a bad datatype code twice (its handler and the root's) beside our error;
    only a real process shows it (nibabel's handler holds the real stderr)."""
    ct = _tiny_ct(tmp_path)
    raw = bytearray(gzip.decompress(ct.read_bytes()))
    raw[70:72] = (1234).to_bytes(2, "little")  # datatype code
    (tmp_path / "bad_dtype.nii").write_bytes(bytes(raw))
    # segment, whose model load (torch, MONAI) runs beside the read and is waited for: it adds nothing to stderr
    proc = _run_process(["segment", "bad_dtype.nii", "-o", "out.nii.gz", "--no-progress"], tmp_path)
    lines = proc.stderr.decode().strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "1234" in lines[0], lines


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_header_claiming_more_voxels_than_the_file_can_hold_is_a_broken_file_not_a_memory_shortage(tmp_path,
                                                                                                   suffix):
    header = nib.Nifti1Header()
    header.set_data_shape((32767, 32767, 32767))
    header.set_data_dtype(np.int16)
    header["vox_offset"] = 352  # the voxels after the header and its 4-byte extension flag (0 is refused itself)
    path = tmp_path / f"hugedims{suffix}"
    raw = header.binaryblock + b"\0" * 4 + b"\0" * 64
    path.write_bytes(gzip.compress(raw) if suffix == ".nii.gz" else raw)
    proc = _run_process(["preprocess", path.name, "-o", "preview.png"], tmp_path)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "truncated or its header is wrong" in err and "32767 x 32767 x 32767" in err
    assert "memory" not in err


def test_headless_scene_prints_nothing_on_stderr(tmp_path):
    """slicer-core's color logic printed a red 'FindDefaultColorFiles failed: HomeDirectory is not set' ERR line
    on every .seg.nrrd output."""
    pytest.importorskip("slicer")
    code = ("from LiverTumorSegLib import mrml; s = mrml.make_headless_scene(); "
            "print(s.GetNumberOfNodesByClass('vtkMRMLColorTableNode') > 0)")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "True" and proc.stderr.strip() == "", proc.stderr


def _non_utf8(name: bytes) -> str:
    return os.fsdecode(name)


@pytest.mark.parametrize("where", ["input", "output"])
def test_non_utf8_path_is_refused_up_front(tmp_path, where):
    """ITK aborted the whole process (SIGABRT) on such names and left temporaries; now: one line, exit 2."""
    ct = _tiny_ct(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    if where == "input":
        bad = tmp_path / _non_utf8(b"scan\xff.nrrd")
        write_volume(tmp_path / "scan.nrrd", _phantom().ct)
        os.rename(tmp_path / "scan.nrrd", bad)
        argv = ["preprocess", bad, "-o", out_dir / "preview.png"]  # the read's refusal, without a model load
    else:
        argv = ["segment", ct, "-o", out_dir / _non_utf8(b"seg\xff.nrrd"), "--no-progress"]
    proc = _run_process(argv, tmp_path)
    err = proc.stderr.decode("utf-8", "replace")
    line = assert_clean_error(proc.returncode, err, ["contains bytes that are not valid UTF-8", "\\xff"])
    assert os.listdir(out_dir) == []
    record15(f"{where} path with a non-UTF-8 byte (`\\xff`)", line, tmp_path)


@pytest.mark.parametrize("command", ["segment", "preprocess"])
def test_unwritable_output_folder_is_refused_before_the_work(tmp_path, capsys, monkeypatch, command):
    """/sys refuses new files even for root (a chmod'ed folder would not stop root)."""
    ct = _tiny_ct(tmp_path)

    def no_reading(*args, **kwargs):
        raise AssertionError("the input was read before the output folder was checked")

    monkeypatch.setattr(lts_io, "read_volume", no_reading)
    out = "/sys/seg.nii.gz" if command == "segment" else "/sys/preview.png"
    argv = [command, ct, "-o", out] + (["--no-progress"] if command == "segment" else [])
    code, text, err = run_cli(argv, capsys)
    line = assert_clean_error(code, err, ["Output folder '/sys' is not writable"])
    if command == "segment":
        record15("output folder that is not writable (`-o /sys/seg.nii.gz`)", line, tmp_path)


def test_unwritable_report_folder_is_refused_before_the_work(tmp_path, capsys, monkeypatch):
    ct = _tiny_ct(tmp_path)
    monkeypatch.setattr(lts_io, "read_volume", lambda *a, **k: pytest.fail("input read before the check"))
    code, text, err = run_cli(["segment", ct, "-o", tmp_path / "seg.nii.gz", "--report", "/sys/r.json",
                               "--no-progress"], capsys)
    assert_clean_error(code, err, ["Output folder '/sys' is not writable"])
    assert not (tmp_path / "seg.nii.gz").exists()


SIGTERM_DURING_WRITE = r"""
import os, signal, sys, time
from LiverTumorSegLib.io import writers
original = writers._write_nifti

def write_then_sigterm(tmp, array, geometry, *rest):
    original(tmp, array, geometry, *rest)
    os.kill(os.getpid(), getattr(signal, os.environ.get("LTS_TEST_SIGNAL", "SIGTERM")))  # while the temporary exists
    time.sleep(5)

writers._write_nifti = write_then_sigterm
if hasattr(signal, "SIGHUP"):  # a run from a terminal; under nohup (pytest started so) SIGHUP is inherited ignored
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
from LiverTumorSegLib.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("signal_name, code", [("SIGTERM", 143)] + ([("SIGHUP", 129)] if hasattr(signal, "SIGHUP")
                                                                      else []))
def test_sigterm_during_the_write_phase_removes_temporaries(tmp_path, signal_name, code):
    """SIGHUP (a closed terminal, a dropped ssh connection) ended the run with no clean-up; it is handled as
    SIGTERM is, with exit 128 + its number."""
    ct = _tiny_ct(tmp_path)
    pkg = _tiny_package(tmp_path, arch="resnet18_fcn", width=0.125)  # a network without MONAI's import (~1.5 s)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = ["segment", str(ct), "-o", str(out_dir / "seg.nii.gz"), "--report", str(out_dir / "r.json"),
            "--model", str(pkg), "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), LTS_TEST_SIGNAL=signal_name)
    proc = subprocess.run([sys.executable, "-c", SIGTERM_DURING_WRITE] + argv, capture_output=True, timeout=300,
                          cwd=str(tmp_path), env=env)
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == code, err
    # the tiny CT and model also print notices (implausible liver, bf16 check): the error is the one last line
    lines = [line for line in err.strip().splitlines() if line.startswith("error")]
    assert lines == [f"error: terminated ({signal_name}); unfinished output files were removed"], err
    assert err.strip().splitlines()[-1] == lines[0] and "Traceback" not in err
    assert os.listdir(out_dir) == []
    record15(f"{signal_name} while the outputs are being written", lines[0], tmp_path)


# ------------------------------------------------------------------------------------------------ train
TRAIN_PREPROCESSING = ('{"channels": [{"kind": "window", "level": 40, "width": 400}], "context_slices": 0, '
                       '"target_spacing_mm": 3.0, "size_multiple": 16}')


def _train_argv(csv_path: Path, out: Path, epochs: int = 2, command: str = "train") -> List[str]:
    return [command, "--data", csv_path, "--model", "unet", "--model-options",
            '{"channels": [4, 8], "num_res_units": 0}', "--preprocessing", TRAIN_PREPROCESSING,
            "--patch-size", "32", "--batch-size", "2", "--epochs", str(epochs), "--iterations-per-epoch", "2",
            "--num-workers", "0", "--no-tensorboard", "--augmentation", '{"enabled": false}',
            "--synthetic-lesions", "false", "--val-fraction", "0.5", "--no-progress-bar", "-o", out]


@pytest.fixture
def train_csv(tmp_path):
    from training_helpers import write_phantom_cases

    data = tmp_path / "data"
    data.mkdir()
    return write_phantom_cases(data, 2, (6, 40, 40))


def test_train_with_stderr_closed_writes_its_package(tmp_path, monkeypatch, train_csv):
    """`train --progress-bar ... 2>&-` (Python then has sys.stderr None): the bar's first write ended the run with
    "internal error: AttributeError: 'NoneType' object has no attribute 'write'", exit 1, no package."""
    out = tmp_path / "model.safetensors"
    argv = [str(a) for a in _train_argv(train_csv, out, epochs=1)]
    argv[argv.index("--no-progress-bar")] = "--progress-bar"
    monkeypatch.setattr(sys, "stderr", None)
    assert main(argv) == 0 and out.exists()
    assert sys.stderr is None


def test_train_name_and_description_reach_the_package_and_a_pt_output_is_refused(tmp_path, capsys, train_csv):
    """--name is what `segment --model NAME` finds an installed package by, --description its free text; no test
    had trained with them. -o model.pt (PyTorch's habit) is refused before a training folder is made."""
    from LiverTumorSegLib.package import readable_package_metadata

    code, text, err = run_cli(_train_argv(train_csv, tmp_path / "model.pt", epochs=1), capsys)
    assert_clean_error(code, err, ["model.pt' must end in .safetensors (a model package)"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    out = tmp_path / "tiny.safetensors"
    argv = _train_argv(train_csv, out, epochs=1) + ["--name", "Tiny liver net", "--description", "2 phantoms, 1 epoch"]
    code, text, err = run_cli(argv, capsys)
    assert code == 0, err
    meta = readable_package_metadata(out)
    assert (meta["name"], meta["description"]) == ("Tiny liver net", "2 phantoms, 1 epoch")


def test_resume_at_an_epoch_boundary_logs_no_phantom_epoch(tmp_path, capsys, monkeypatch, train_csv):
    """Ctrl-C right after the end-of-epoch-1 checkpoint; --resume must continue with epoch 2, not log epoch 1
    again with loss 0."""
    import torch

    from LiverTumorSegLib.training import trainer as trainer_module
    from LiverTumorSegLib.training.logs import read_log

    torch.manual_seed(0)
    out = tmp_path / "model.safetensors"
    original = trainer_module.Trainer.save_last

    def save_then_interrupt(self, epoch, step_in_epoch, **kwargs):
        original(self, epoch, step_in_epoch, **kwargs)
        if (epoch, step_in_epoch) == (1, 0):
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer_module.Trainer, "save_last", save_then_interrupt)
    code, text, err = run_cli(_train_argv(train_csv, out), capsys)
    assert code == 130, err
    monkeypatch.setattr(trainer_module.Trainer, "save_last", original)
    code, text, err = run_cli(_train_argv(train_csv, out) + ["--resume"], capsys)
    assert code == 0, err
    assert "resuming" in text and "epoch 2 of 2," in text
    rows = read_log(tmp_path / "model_train" / "log.csv")
    assert [int(float(r["epoch"])) for r in rows] == [1, 2]
    assert all(float(r["train_loss"]) > 0.01 for r in rows), rows
    assert text.count("epoch 1/2") == 0 and text.count("epoch 2/2") == 1


def test_resume_of_a_finished_run_does_not_rewrite_the_package(tmp_path, capsys, train_csv):
    out = tmp_path / "model.safetensors"
    code, text, err = run_cli(_train_argv(train_csv, out, epochs=1), capsys)
    assert code == 0, err
    before = out.read_bytes()
    code, text, err = run_cli(_train_argv(train_csv, out, epochs=1) + ["--resume"], capsys)
    line = assert_clean_error(code, err, ["already finished its 1 epochs", "--overwrite"])
    assert out.read_bytes() == before
    record15("`train --resume` of a run that already finished", line, tmp_path)


def test_resume_of_a_finished_run_whose_package_was_damaged_says_so_and_how_to_write_it_again(tmp_path, capsys,
                                                                                              train_csv):
    """A finished run's package cut short (a copy that stopped): --resume answered "already finished its 1 epochs and
    wrote it; nothing to resume ... start over with --overwrite and a larger --epochs", though the package could not
    be used at all (crossval --resume met the same for a fold package it could not read). The refusal says the file
    cannot be read, keeps it, and deleting it lets --resume write the package from the checkpoint."""
    from LiverTumorSegLib.package import readable_package_metadata

    out = tmp_path / "model.safetensors"
    argv = _train_argv(train_csv, out, epochs=1)
    code, text, err = run_cli(argv, capsys)
    assert code == 0, err
    whole = out.read_bytes()
    out.write_bytes(whole[: len(whole) // 2])
    code, text, err = run_cli(argv + ["--resume"], capsys)
    line = assert_clean_error(code, err, ["finished its 1 epochs, but", "model.safetensors' cannot be read as a "
                                          "model package", "delete it and run again with --resume"])
    assert "nothing to resume" not in line and out.read_bytes() == whole[: len(whole) // 2]
    record15("`train --resume` of a finished run whose package was damaged (cut short)", line, tmp_path)
    out.unlink()
    code, text, err = run_cli(argv + ["--resume"], capsys)
    assert code == 0, err
    assert "all 1 epochs were trained" in text and readable_package_metadata(out)["training"]["epochs_completed"] == 1


def test_train_into_a_users_existing_folder_is_refused(tmp_path, capsys, train_csv):
    """`-o proj.safetensors` logs into proj_train/; a folder of the user's by that name lost its log.csv."""
    folder = tmp_path / "model_train"
    folder.mkdir()
    (folder / "log.csv").write_text("my own notes\n")
    code, text, err = run_cli(_train_argv(train_csv, tmp_path / "model.safetensors", epochs=1), capsys)
    line = assert_clean_error(code, err, ["model_train' already exists", "--overwrite"])
    assert (folder / "log.csv").read_text() == "my own notes\n" and sorted(p.name for p in folder.iterdir()) == [
        "log.csv"] and not (tmp_path / "model.safetensors").exists()
    record15("`train -o model.safetensors` beside a folder `model_train/` of the user's", line, tmp_path)


@pytest.mark.parametrize("kind", ["nan", "mr_like"])
def test_train_refuses_a_training_ct_that_segment_would_refuse(tmp_path, capsys, train_csv, kind):
    """A CT two thirds NaN, or less its minimum (MR-like values >= 0; its distribution now names it a CT stored
    without its intercept), trained silently and wrote a package; segment refuses both."""
    import nibabel as nib

    path = train_csv.parent / "ct1.nii.gz"
    image = nib.load(str(path))
    arr = np.asarray(image.dataobj).astype(np.float32)
    if kind == "nan":
        arr[: 2 * arr.shape[0] // 3] = np.nan
    else:
        arr = arr - arr.min()  # 0 .. ~2000: no air near -1000
    nib.save(nib.Nifti1Image(arr, image.affine), str(path))
    out = tmp_path / "model.safetensors"
    code, text, err = run_cli(_train_argv(train_csv, out, epochs=1), capsys)
    words = ["NaN/Inf voxels"] if kind == "nan" else ["Hounsfield", "--allow-non-hu"]
    line = assert_clean_error(code, err, ["ct1.nii.gz"] + words)
    assert not out.exists()
    assert [p.name for p in (tmp_path / "model_train").iterdir()] == ["cache"]  # ct0's cache, for the next run
    what = "two thirds NaN" if kind == "nan" else "less its minimum (0..1719: no air near -1000)"
    record15(f"`train` on a CT that is {what}", line, tmp_path)
    if kind == "mr_like":
        code, text, err = run_cli(_train_argv(train_csv, out, epochs=1) + ["--allow-non-hu"], capsys)
        assert code == 0 and out.exists(), err


def test_crossval_into_a_folder_with_results_is_refused(tmp_path, capsys, train_csv):
    out = tmp_path / "cv"
    out.mkdir()
    (out / "crossval.csv").write_text("fold,liver_dice\n0,0.9\n")
    argv = _train_argv(train_csv, out, epochs=1, command="crossval") + ["--folds", "2"]
    argv.remove("--val-fraction"), argv.remove("0.5")
    code, text, err = run_cli(argv, capsys)
    line = assert_clean_error(code, err, ["crossval.csv' already exists", "--overwrite"])
    assert (out / "crossval.csv").read_text() == "fold,liver_dice\n0,0.9\n"
    assert sorted(p.name for p in out.iterdir()) == ["crossval.csv"]
    record15("`crossval -o cv` where `cv/crossval.csv` exists", line, tmp_path)


def test_crossval_resume_with_overwrite_is_refused_before_a_fold_is_removed(tmp_path, capsys, train_csv):
    """train reads --resume --overwrite as 'resume, and replace -o'; crossval's --overwrite removes the earlier run's
    fold packages and checkpoints first, so the pair deleted finished folds with --resume ignored (the command-line
    audit). Refused now, every file kept."""
    out = tmp_path / "cv"
    (out / "fold_0_train" / "checkpoints").mkdir(parents=True)
    (out / "fold_0.safetensors").write_bytes(b"a finished fold")
    (out / "fold_0_train" / "checkpoints" / "last.pt").write_bytes(b"its checkpoint")
    argv = _train_argv(train_csv, out, epochs=1, command="crossval") + ["--folds", "2", "--resume", "--overwrite"]
    argv.remove("--val-fraction"), argv.remove("0.5")
    code, text, err = run_cli(argv, capsys)
    assert_clean_error(code, err, ["--resume continues the earlier run's folds", "give one of the two"])
    assert (out / "fold_0.safetensors").read_bytes() == b"a finished fold"
    assert (out / "fold_0_train" / "checkpoints" / "last.pt").is_file()


@pytest.mark.parametrize("command", ["train", "crossval", "crossval --log-dir"])
def test_failed_run_leaves_only_the_slice_cache_of_the_cases_before_it(tmp_path, capsys, train_csv, command):
    """A case that cannot be read (found while building the slice cache, after the run's folders were made).
    crossval with --log-dir deep/logs left deep/logs behind. The cases cached before the bad one stay (a data
    error found late in a large data set cost all their caching again), and the run after the fix reuses them,
    with the file hashes --resume compares (taken before the first case is cached)."""
    from LiverTumorSegLib.training.slice_cache import CONTENT_HASHES_NAME

    good_ct1 = (train_csv.parent / "ct1.nii.gz").read_bytes()  # put back below (a copy of ct0 is refused now)
    (train_csv.parent / "ct1.nii.gz").write_bytes(b"\x1f\x8b" + b"not a gzip stream" * 40)
    log_dir = command.endswith("--log-dir")
    command = command.split()[0]
    out = tmp_path / ("model.safetensors" if command == "train" else "cv")
    argv = _train_argv(train_csv, out, epochs=1, command=command) + (["--folds", "2"] if command == "crossval" else [])
    if log_dir:
        argv += ["--log-dir", str(tmp_path / "deep" / "logs")]
    if command == "crossval":
        argv.remove("--val-fraction"), argv.remove("0.5")
    before = sorted(p.name for p in tmp_path.iterdir())
    code, text, err = run_cli(argv, capsys)
    line = assert_clean_error(code, err, ["ct1.nii.gz"])
    kept = tmp_path / ("model_train" if command == "train" else "cv")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before + [kept.name])  # deep/logs went
    assert [p.name for p in kept.iterdir()] == ["cache"]
    assert (kept / "cache" / CONTENT_HASHES_NAME).is_file()
    sidecars = [p for p in kept.rglob("*.json") if p.name != CONTENT_HASHES_NAME]
    assert sorted(p.name.split("-")[0] for p in sidecars) == ["ct0"]  # the case before the bad one
    if not log_dir:
        record15(f"`{command}` with an unreadable case (only the finished cases' slice cache left)", line, tmp_path)
    (train_csv.parent / "ct1.nii.gz").write_bytes(good_ct1)
    code, text, err = run_cli(argv, capsys)
    assert code == 0 and "caching ct0" not in text + err and "caching ct1" in text + err


def test_refused_checkpoint_is_one_line_in_our_words(tmp_path, capsys, train_csv):
    import argparse
    import collections

    import torch

    ckpt = tmp_path / "model_train" / "checkpoints" / "last.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"model": collections.OrderedDict(), "optimizer": {}, "epoch": 0, "global_step": 0,
                "config": "{}", "evil": argparse.Namespace(a=1)}, str(ckpt))
    code, text, err = run_cli(_train_argv(train_csv, tmp_path / "model.safetensors") + ["--resume"], capsys)
    line = assert_clean_error(code, err, ["last.pt' cannot be read and was refused", "could run code"])
    assert "weights_only" not in err and "will likely succeed" not in err
    record15("`train --resume` whose checkpoint holds a non-tensor Python object", line, tmp_path)
    # random bytes (a damaged copy) were called 'a pickle that could run code' too
    ckpt.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes().replace(b"\x80", b"\x81"))
    code, text, err = run_cli(_train_argv(train_csv, tmp_path / "model.safetensors") + ["--resume"], capsys)
    line = assert_clean_error(code, err, ["last.pt' cannot be read and was refused",
                                          "it is truncated or not a PyTorch file (it does not begin as one"])
    assert "could run code" not in line
    # one that loads but whose training state is not JSON was an "internal error: JSONDecodeError"
    torch.save({"model": collections.OrderedDict(), "optimizer": {}, "epoch": 0, "global_step": 0,
                "config": "{}", "state": "{cut sho"}, str(ckpt))
    code, text, err = run_cli(_train_argv(train_csv, tmp_path / "model.safetensors") + ["--resume"], capsys)
    line = assert_clean_error(code, err, ["last.pt' holds a 'state' that is not valid JSON", "Delete it"])
    record15("`train --resume` whose checkpoint loads but holds a damaged entry (a training state that is not JSON, "
             "a step count that is no whole number, a random state of another size)", line, tmp_path)


def test_checkpoint_of_another_model_is_refused_in_one_line(tmp_path, capsys, train_csv):
    import collections

    import torch

    ckpt = tmp_path / "model_train" / "checkpoints" / "last.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"model": collections.OrderedDict(w=torch.zeros(2)), "optimizer": {}, "epoch": 0,
                "global_step": 0, "config": "{}"}, str(ckpt))
    code, text, err = run_cli(_train_argv(train_csv, tmp_path / "model.safetensors") + ["--resume"], capsys)
    line = assert_clean_error(code, err, ["does not fit this run's model"])
    record15("`train --resume` with a checkpoint of another model", line, tmp_path)


@pytest.mark.parametrize("saved, words", [
    ("state_dict", ["last.pt' lacks 'model'", "Delete it (or its run folder) to start over"]),
    ("tensor", ["last.pt' holds a Tensor, not a training checkpoint", "Delete it to start over"]),
])
def test_foreign_checkpoint_is_refused_saying_what_to_do(tmp_path, capsys, train_csv, saved, words):
    """A bare state dict (what most PyTorch code saves) or a bare tensor at last.pt loads safely but is not this
    program's checkpoint; --resume refuses it in one line that names the file and what to do (the state dict's
    'lacks' message said only what was wrong), and the file is left for the user."""
    import collections

    import torch

    ckpt = tmp_path / "model_train" / "checkpoints" / "last.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save(collections.OrderedDict(w=torch.zeros(2)) if saved == "state_dict" else torch.zeros(3), str(ckpt))
    before = ckpt.read_bytes()
    code, text, err = run_cli(_train_argv(train_csv, tmp_path / "model.safetensors") + ["--resume"], capsys)
    assert_clean_error(code, err, words)
    assert ckpt.read_bytes() == before and not (tmp_path / "model.safetensors").exists()


@pytest.mark.parametrize("command", ["train", "crossval"])
def test_train_into_unwritable_folder_is_refused_before_the_work(tmp_path, capsys, train_csv, command):
    out = Path("/sys/model.safetensors") if command == "train" else Path("/sys/cv")
    argv = _train_argv(train_csv, out, epochs=1, command=command) + (["--folds", "2"] if command == "crossval" else [])
    code, text, err = run_cli(argv, capsys)
    line = assert_clean_error(code, err, ["'/sys' is not writable"])
    assert "data:" not in text  # refused before the data were even listed
    record15(f"`{command} -o` into a folder that is not writable", line, tmp_path)


def test_package_whose_preprocessing_disagrees_with_its_network_is_refused(tmp_path, capsys):
    src = _tiny_package(tmp_path)
    bad = _rewrite_package(src, tmp_path / "context.safetensors",
                           lambda m: m["preprocessing"].update(context_slices=3))
    ct = _tiny_ct(tmp_path)
    code, out, err = run_cli(["segment", ct, "-o", tmp_path / "seg.nii.gz", "--model", bad, "--no-progress"], capsys)
    line = assert_clean_error(code, err, ["makes 21 input channels in all but its network takes 9"])
    assert not (tmp_path / "seg.nii.gz").exists()
    record15("package whose preprocessing makes 21 channels for a 9-channel network", line, tmp_path)


def test_segment_sample_refuses_writing_over_the_bundled_reference(tmp_path, monkeypatch, capsys):
    """'segment --sample -o .../sample_liver_reference.nii.gz --overwrite' replaced the bundled reference with the
    result and then compared the result with itself: 'liver Dice vs bundled reference: 1.000'. The reference (here
    a stand-in) is refused as an output before any work, under another spelling and as --probabilities too."""
    from LiverTumorSegLib import resources

    reference = tmp_path / "Sample" / "sample_liver_reference.nii.gz"
    reference.parent.mkdir()
    reference.write_bytes(b"the bundled reference")
    monkeypatch.setattr(resources, "sample_reference_path", lambda: reference)
    spellings = (["-o", str(tmp_path / "Sample" / ".." / "Sample" / reference.name)],
                 ["-o", str(tmp_path / "seg.nii.gz"), "--probabilities", str(reference)])
    for outputs in spellings:
        code = main(["segment", "--sample", *outputs, "--overwrite", "--no-progress"])
        assert_clean_error(code, capsys.readouterr().err, ["bundled sample's reference label map"])
        assert reference.read_bytes() == b"the bundled reference"
    assert not (tmp_path / "seg.nii.gz").exists()


@pytest.mark.parametrize("header_name, header", [
    ("ct.mhd", "ObjectType = Image\nNDims = 3\nDimSize = 8 6 4\nElementType = MET_SHORT\nElementSpacing = 1 1 1\n"
               "ElementDataFile = {data}\n"),
    ("ct.nhdr", "NRRD0004\ntype: short\ndimension: 3\nsizes: 8 6 4\nspace: left-posterior-superior\n"
                "space directions: (1,0,0) (0,1,0) (0,0,1)\nencoding: raw\nendian: little\ndata file: {data}\n")])
def test_an_output_that_is_the_inputs_data_file_is_refused(tmp_path, capsys, header_name, header):
    """A .mhd whose ElementDataFile (or a .nhdr whose data file) is 'out.nii', segmented with '-o out.nii
    --overwrite': only the header was compared with the outputs, and the CT's voxels were replaced by the labels."""
    (tmp_path / "out.nii").write_bytes(np.zeros((4, 6, 8), "<i2").tobytes())
    (tmp_path / header_name).write_text(header.format(data="out.nii"))
    before = (tmp_path / "out.nii").read_bytes()
    code = main(["segment", str(tmp_path / header_name), "-o", str(tmp_path / "out.nii"), "--overwrite",
                 "--no-progress"])
    assert_clean_error(code, capsys.readouterr().err, ["input's data file", "are the same file"])
    assert (tmp_path / "out.nii").read_bytes() == before


def test_output_that_is_the_input_under_another_spelling_is_refused(tmp_path, monkeypatch):
    """'-o CT.nii.gz --overwrite' for the input 'ct.nii.gz' replaced the CT on macOS and Windows (one file there:
    the paths were compared with case); a hard link to the input, or a probability map named like the output,
    likewise. Compared now by real path (without case where the file system ignores it) and (device, inode)."""
    from LiverTumorSegLib import fileutil
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.inference.segmenter import _check_outputs

    ct = tmp_path / "ct.nii.gz"
    ct.write_bytes(b"x")
    os.link(ct, tmp_path / "link.nii.gz")
    with pytest.raises(InputError, match="are the same file; the input and each output must be different files"):
        _check_outputs(ct, tmp_path / "link.nii.gz", None, None, None, overwrite=True)
    # which two collide is said (helper-25's audit: 'must all be different files' named none)
    with pytest.raises(InputError, match=r"The output '.*seg.nii.gz' and the probability map '.*seg.nii.gz' are the "
                                         r"same file; the input and each output must be different files"):
        _check_outputs(ct, tmp_path / "seg.nii.gz", None, None, tmp_path / "seg.nii.gz", overwrite=True)
    _check_outputs(ct, tmp_path / "CT.nii.gz", None, None, None, overwrite=True)  # another file on Linux
    monkeypatch.setattr(fileutil.sys, "platform", "darwin")  # a case-insensitive file system
    with pytest.raises(InputError, match="are the same file; the input and each output must be different files"):
        _check_outputs(ct, tmp_path / "CT.nii.gz", None, None, None, overwrite=True)
    # without --overwrite too: 'segment ct.nii.gz -o ct.nii.gz' was told the output exists and to pass --overwrite
    with pytest.raises(InputError, match="are the same file; the input and each output must be different files"):
        _check_outputs(ct, ct, None, None, None, overwrite=False)
