"""A .seg.nrrd gets the warnings the NRRD reader gives a plain .nrrd label map: its header edited to fewer slices
(raw or gzip data holding more slices than it describes: they are not read) or without spacings (1 mm voxels
assumed). The .seg.nrrd reader dropped them, so such a file was measured without a word while the same voxels as a
plain .nrrd warned on stderr and in the report's warnings."""
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_segnrrd import LIVER, TUMOR, write_seg_nrrd_by_hand  # noqa: E402

from LiverTumorSegLib.cli import main  # noqa: E402
from LiverTumorSegLib.io import read_label_map  # noqa: E402
from LiverTumorSegLib.phantom import make_phantom  # noqa: E402
from LiverTumorSegLib.volume import CTVolume  # noqa: E402

EXTRA_SLICES = ("the file holds {n} bytes after the 24 x 20 x 4 voxels its header describes (about 2 more slices); "
                "they are not read. If the header's slice count is wrong, export the CT again")
NO_SPACING = ("the header gives no voxel spacing, so 1 mm voxels were assumed (as ITK and 3D Slicer read it): "
              "volumes (mL) and sizes (mm) are right only if the voxels are 1 mm. Export the volume with its spacing")


def _labels() -> np.ndarray:
    labels = make_phantom(shape_zyx=(6, 20, 24), seed=1).labels
    assert set(np.unique(labels[:4]).tolist()) == {0, 1, 2}  # liver and tumor in the 4 slices the header keeps
    return labels


def _fewer_slices(path: Path) -> Path:
    """``path`` with its header edited from 6 slices to 4 (the data still holds 6)."""
    text = path.read_bytes()
    assert text.count(b" 24 20 6\n") == 1
    path.write_bytes(text.replace(b" 24 20 6\n", b" 24 20 4\n"))
    return path


def _without_spacing(path: Path) -> Path:
    """``path`` with no ``space``, ``space directions`` or ``space origin`` line (ITK then takes 1 mm voxels)."""
    text = re.sub(rb"space[^\n]*\n", b"", path.read_bytes().split(b"\n\n", 1)[0]) + b"\n\n" + \
        path.read_bytes().split(b"\n\n", 1)[1]
    assert b"space" not in text.split(b"\n\n", 1)[0]
    path.write_bytes(text)
    return path


def _measure(path: Path, capsys, *more: str):
    out = path.parent / (path.name + ".json")
    capsys.readouterr()
    assert main(["measure", str(path), "-o", str(out), *more]) == 0
    stderr = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    return stderr, json.loads(out.read_text())


@pytest.mark.parametrize("encoding", ["raw", "gzip"])
@pytest.mark.parametrize("layers", [1, 2])
def test_a_seg_nrrd_holding_more_slices_than_its_header_says_warns_as_a_plain_nrrd(tmp_path, encoding, layers):
    labels = _labels()
    if layers == 1:
        stored, segments = [labels], [LIVER, TUMOR]
    else:  # two layers: two bytes a voxel, so twice the bytes after the voxels
        stored = [(labels >= 1).astype(np.uint8), (labels == 2).astype(np.uint8)]
        segments = [LIVER, dict(TUMOR, Layer="1", LabelValue="1")]
    path = _fewer_slices(write_seg_nrrd_by_hand(tmp_path / "case.seg.nrrd", stored, segments, encoding=encoding))
    said = EXTRA_SLICES.format(n=2 * 24 * 20 * layers)
    volume = read_label_map(path)
    assert volume.meta["warnings"] == [said]
    assert np.array_equal(volume.array, labels[:4])  # what is read is unchanged
    # the same file given with a larger CT it is a crop of: the note is kept beside the placement's
    ct = CTVolume(np.zeros((6, 20, 24), np.int16), volume.geometry)
    on_ct = read_label_map(path, reference=ct)
    assert on_ct.meta["warnings"] == [said, "cropped segmentation placed into the reference grid"]
    if layers == 1:  # the same bytes as a plain .nrrd label map: the same warning
        plain = tmp_path / "case.nrrd"
        plain.write_bytes(path.read_bytes())
        assert read_label_map(plain).meta["warnings"] == [said]


def test_measure_says_a_seg_nrrd_has_more_slices_or_no_spacing_as_it_says_it_of_a_plain_nrrd(tmp_path, capsys):
    labels = _labels()
    edited = _fewer_slices(write_seg_nrrd_by_hand(tmp_path / "edited.seg.nrrd", [labels], [LIVER, TUMOR],
                                                  encoding="gzip"))
    bare = _without_spacing(write_seg_nrrd_by_hand(tmp_path / "bare.seg.nrrd", [labels], [LIVER, TUMOR]))
    from LiverTumorSegLib.io.itk import nrrd_without_space_text

    for path, said in ((edited, [EXTRA_SLICES.format(n=960)]),
                       (bare, [NO_SPACING, nrrd_without_space_text(bare)])):  # no 'space' either: sides unknown
        stderr, report = _measure(path, capsys)
        cut = report["warnings"][len(said):]  # the phantom's liver lies on the scan's first or last slice
        assert len(cut) == 1 and cut[0].startswith("The scan starts or ends inside the liver")
        assert stderr == [f"warning: {w}" for w in said + cut] and report["warnings"] == said + cut
        plain = tmp_path / path.name.replace(".seg.nrrd", ".nrrd")
        plain.write_bytes(path.read_bytes())
        named = (lambda text: text.replace(f"'{path.name}'", f"'{plain.name}'"))  # a warning names its file
        assert _measure(plain, capsys) == ([named(w) for w in stderr],
                                           dict(report, labels=str(plain), warnings=[named(w) for w in report["warnings"]]))
    # 1 mm assumed: the liver's volume is its voxel count in mL / 1000, as the warning says
    assert report["liver_volume_ml"] == pytest.approx(np.count_nonzero(labels) / 1000.0)


def test_evaluate_records_the_reader_warnings_of_a_seg_nrrd(tmp_path):
    labels = _labels()
    for folder in ("pred", "ref"):
        (tmp_path / folder).mkdir()
        _without_spacing(write_seg_nrrd_by_hand(tmp_path / folder / "case1.seg.nrrd", [labels], [LIVER, TUMOR]))
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"), "-o",
                 str(tmp_path / "ev"), "--no-plots", "--no-surface", "--no-progress"]) == 0
    from LiverTumorSegLib.io.itk import nrrd_without_space_text

    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    no_space = nrrd_without_space_text(Path("case1.seg.nrrd"))  # no 'space' either: its sides are unknown
    assert summary["warnings"] == {"case1": [f"prediction: {NO_SPACING}", f"prediction: {no_space}",
                                             f"reference: {NO_SPACING}", f"reference: {no_space}"]}


def test_an_empty_stand_in_without_spacing_reads_on_its_recorded_grid_without_the_1_mm_note(tmp_path):
    """A .seg.nrrd whose segments are all empty is one stand-in voxel; its labels lie on the CT's grid, so what
    the reader says of the stand-in's own spacing does not apply."""
    empty = [dict(LIVER, Extent="0 -1 0 -1 0 -1"), dict(TUMOR, Extent="0 -1 0 -1 0 -1")]
    path = _without_spacing(write_seg_nrrd_by_hand(tmp_path / "empty.seg.nrrd", [np.zeros((1, 1, 1))], empty))
    ct = CTVolume(np.zeros((3, 4, 5), np.int16), make_phantom(shape_zyx=(3, 4, 5), seed=0).ct.geometry)
    volume = read_label_map(path, reference=ct)
    assert volume.shape_zyx == (3, 4, 5) and not volume.array.any()
    assert "warnings" not in volume.meta


def test_measure_says_a_left_out_segment_once(tmp_path, capsys):
    """The .seg.nrrd reader logs its left-out segments (evaluate's only word of them on stderr) and puts them in the
    map's warnings, which measure prints: measure said it twice."""
    labels = _labels()
    stored = labels.copy()
    stored[0, :2, :2] = 3  # a third segment, neither liver nor tumor by name
    path = write_seg_nrrd_by_hand(tmp_path / "three.seg.nrrd", [stored], [
        LIVER, TUMOR, {"ID": "Segment_3", "Name": "Portal vein", "LabelValue": "3", "Layer": "0"}])
    import subprocess

    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "LiverTumorSegLib", "measure", str(path), "-o", str(out)],
                          capture_output=True, text=True, timeout=120)  # the log handler's stderr, as users see it
    assert proc.returncode == 0, proc.stderr
    left_out = [line for line in proc.stderr.splitlines() if "'Portal vein'" in line]
    assert len(left_out) == 1 and left_out[0].startswith("warning: ") and "left out" in left_out[0], proc.stderr
    report = json.loads(out.read_text())
    assert [w for w in report["warnings"] if "'Portal vein'" in w] == [left_out[0][len("warning: "):]]


def test_tumor_segments_that_touch_are_named_as_one_lesion(tmp_path, capsys):
    """Two tumor segments a reader drew apart ('Liver tumor -_1', '-_2', as Slicer's Split islands names them) whose
    voxels touch were measured as one lesion, one RECIST target, without a word (the lesion-report audit). They are
    still one lesion (the lesions' own rule: 26-connected parts of label 2), and a warning says so; segments apart,
    or one tumor segment, give none."""
    stored = np.zeros((10, 40, 40), np.uint8)
    stored[2:8, 5:35, 5:35] = 1
    stored[3:6, 10:20, 10:20] = 2  # 'Liver tumor -_1'
    stored[3:6, 10:20, 20:28] = 3  # 'Liver tumor -_2', touching it across a face
    tumors = [{"ID": "t1", "Name": "Liver tumor -_1", "Layer": "0", "LabelValue": "2"},
              {"ID": "t2", "Name": "Liver tumor -_2", "Layer": "0", "LabelValue": "3"}]
    path = write_seg_nrrd_by_hand(tmp_path / "split.seg.nrrd", [stored], [LIVER] + tumors, spacing=(1.0, 1.0, 3.0))
    said = [w for w in read_label_map(path).meta.get("warnings", []) if "touch" in w]
    assert said == ["'split.seg.nrrd' has tumor segments that touch ('Liver tumor -_1' and 'Liver tumor -_2'): "
                    "lesions are the connected parts of the tumor label (26-connected), so each group is measured "
                    "as one lesion. If they are separate lesions, leave a voxel between them, or measure each "
                    "segment alone"]
    printed, report = _measure(path, capsys)
    assert report["lesion_count"] == 1 and any("touch" in w for w in report["warnings"])
    assert any("tumor segments that touch" in line for line in printed)
    apart = stored.copy()
    apart[3:6, 10:20, 20] = 1  # a voxel of liver between them: two lesions, no warning
    path = write_seg_nrrd_by_hand(tmp_path / "apart.seg.nrrd", [apart], [LIVER] + tumors, spacing=(1.0, 1.0, 3.0))
    assert not [w for w in read_label_map(path).meta.get("warnings", []) if "touch" in w]
    one = np.where(stored == 3, 2, stored)
    path = write_seg_nrrd_by_hand(tmp_path / "one.seg.nrrd", [one], [LIVER, TUMOR], spacing=(1.0, 1.0, 3.0))
    assert not [w for w in read_label_map(path).meta.get("warnings", []) if "touch" in w]


def test_a_seg_nrrd_whose_space_names_no_patient_side_warns_as_one_without_space(tmp_path):
    """'space: scanner-xyz' names a frame but no patient side: ITK reads it as LPS, as a header without 'space', and
    the .seg.nrrd reader took it for a known orientation without the warning (the input formats audit)."""
    from LiverTumorSegLib.io.itk import nrrd_without_space_text
    from LiverTumorSegLib.volume import sides_unknown

    labels = _labels()
    known = write_seg_nrrd_by_hand(tmp_path / "lps.seg.nrrd", [labels], [LIVER, TUMOR])
    path = tmp_path / "scanner.seg.nrrd"
    path.write_bytes(known.read_bytes().replace(b"space: left-posterior-superior\n", b"space: scanner-xyz\n", 1))
    said = nrrd_without_space_text(path, "scanner-xyz")
    assert "gives 'space: scanner-xyz', which names no patient side" in said
    volume = read_label_map(path)
    assert said in volume.meta["warnings"] and sides_unknown(volume)
    assert np.array_equal(volume.array, read_label_map(known).array)
    assert not any("patient side" in w for w in read_label_map(known).meta.get("warnings", []))
