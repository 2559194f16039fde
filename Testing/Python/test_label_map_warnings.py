"""--label-map sends every value it does not list to background (documented): a map written for 0/255 masks turned a
0/1/2 reference into background without a word at run time, and its case scored liver Dice 0. remap_labels now
says so, naming the file and the values, and evaluate shows it on stderr."""
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from LiverTumorSegLib.io import write_label_map
from LiverTumorSegLib.io.labels import remap_labels, unlisted_label_values
from LiverTumorSegLib.phantom import PhantomLesion, make_phantom

ROOT = Path(__file__).resolve().parents[2]


def test_values_the_map_does_not_list_are_named_with_the_file(caplog):
    raw = np.array([[0, 1, 2], [1, 1, 0]], dtype=np.uint8)
    collected = []
    with caplog.at_level(logging.WARNING, logger="LiverTumorSegLib.io.labels"):
        out = remap_labels(raw, {"255": 1}, "refs/case7.nii.gz", warnings=collected)
    assert not out.any()  # the documented rule is unchanged: unlisted values become 0
    assert unlisted_label_values(raw, {"255": 1}) == {1: 3, 2: 1}
    assert len(collected) == 1 and collected[0] in caplog.text
    said = collected[0]
    assert "'refs/case7.nii.gz'" in said and "1 (3 voxels), 2 (1 voxels)" in said and "background" in said
    assert "nothing of it is liver or tumor" in said  # the whole map emptied
    assert '{"255": 1, "1": 1, "2": 2}' in said  # the way to keep them
    # said once per file and process (evaluate's overlays read a case a second time), collected every time
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="LiverTumorSegLib.io.labels"):
        remap_labels(raw, {"255": 1}, "refs/case7.nii.gz", warnings=collected)
    assert caplog.text == "" and len(collected) == 2


def test_no_warning_when_every_value_present_is_listed_or_dropped_on_purpose(caplog):
    raw = np.array([0, 255, 3, 0], dtype=np.uint8)
    collected = []
    with caplog.at_level(logging.WARNING, logger="LiverTumorSegLib.io.labels"):
        assert remap_labels(raw, {"255": 1, "3": 0}, "a.nii", warnings=collected).tolist() == [0, 1, 0, 0]
        remap_labels(raw, {"255": 2, "3": 2, "7": 1}, "b.nii", warnings=collected)  # 7 absent: no matter
        remap_labels(np.array([0, 1, 2]), None, "c.nii", warnings=collected)  # no map: nothing to drop
    assert collected == [] and caplog.text == ""
    # a value of a map that keeps something else is still named, without the "nothing of it" part
    partly = []
    remap_labels(raw, {"255": 1}, "d.nii", warnings=partly)
    assert len(partly) == 1 and "3 (1 voxels)" in partly[0] and "nothing of it" not in partly[0]


def test_evaluate_prints_the_warning_on_stderr(tmp_path):
    lesion = PhantomLesion(center_zyx=(3.0, 12.0, 12.0), radius_mm=4.0, hu=15.0)
    phantom = make_phantom((6, 24, 24), (2.0, 2.0, 4.0), lesions=[lesion], noise_hu=0.0)
    assert set(np.unique(phantom.labels)) == {0, 1, 2}
    for folder in ("pred", "ref"):
        (tmp_path / folder).mkdir()
        write_label_map(tmp_path / folder / "case1.nii.gz", phantom.labels, phantom.ct.geometry)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-m", "LiverTumorSegLib", "evaluate", "--pred", str(tmp_path / "pred"),
                           "--ref", str(tmp_path / "ref"), "-o", str(tmp_path / "eval"), "--no-plots",
                           "--no-surface", "--no-progress", "--label-map", '{"255": 1}'],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    reference = str(tmp_path / "ref" / "case1.nii.gz")
    lines = [line for line in done.stderr.splitlines() if line.startswith("warning: label map")]
    assert len(lines) == 1, done.stderr
    assert f"'{reference}'" in lines[0] and "value(s) 1 (" in lines[0] and ", 2 (" in lines[0]
    assert "background" in lines[0]
    summary = __import__("json").loads((tmp_path / "eval" / "summary.json").read_text())
    said = summary["warnings"]["case1"]
    assert len(said) == 2 and said[0].startswith("reference: ") and "background" in said[0]
    assert "holds no liver or tumor" in said[1]  # what the map left of it: nothing


def test_a_multi_organ_label_is_told_to_map_its_liver_value_not_its_first_extra_one():
    """TotalSegmentator's labels (values 1-117, liver 5) got the advice --label-map '{"3": 1}': the first value
    outside 0-2, which is no liver there. A label with one or two extra values keeps that advice."""
    from LiverTumorSegLib.errors import LabelError

    organs = np.arange(0, 12, dtype=np.uint8).reshape(1, 3, 4)
    with pytest.raises(LabelError, match=r"multi-organ label map.*'\{\"5\": 1\}' for TotalSegmentator's"):
        remap_labels(organs, where="ts.nii.gz")
    with pytest.raises(LabelError, match=r"Map them with --label-map '\{\"1\": 1, \"2\": 2, \"255\": 1\}'"):
        remap_labels(np.array([[[0, 255]]], dtype=np.uint8), where="mask.nii.gz")


@pytest.mark.parametrize("text, said", [
    ('{"1": 1, "1": 2}', "lists the value 1 more than once (key '1' twice)"),
    ('{"1": 1, "01": 2}', "lists the value 1 more than once (keys '1' and '01')"),
    ('{"1_0": 1}', "key '1_0' is not an integer label value"),
])
def test_a_label_map_option_that_names_one_value_twice_is_refused(text, said):
    """JSON keeps the last of two equal keys ('{"1": 1, "1": 2}' read as {"1": 2}, liver became tumor without a
    word); '1' and '01' were both applied, the later winning; int() read '1_0' as 10."""
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.io.labels import parse_label_map_option

    with pytest.raises(InputError, match=re.escape(said)):
        parse_label_map_option(text)
    assert parse_label_map_option('{"1": 1, "2": 2, "255": 1}') == {"1": 1, "2": 2, "255": 1}
    # the same map handed over as a dict (training's config file): refused where it is applied
    raw = np.array([[[0, 1, 2]]], dtype=np.uint8)
    with pytest.raises(InputError, match=r"lists the value 1 twice with different targets \('1': 1, '01': 2\)"):
        remap_labels(raw, {"1": 1, "01": 2}, "case.nii.gz")
    assert remap_labels(raw, {"1": 1, "01": 1, "2": 2}, "case.nii.gz").tolist() == [[[0, 1, 2]]]


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_a_probability_map_given_as_a_label_map_is_named_as_one(tmp_path, suffix):
    """A ``segment --probabilities`` map (uint8 255 x p, tagged) given as a reference was called a multi-organ
    labelling (advice: map liver = 5), and under --label-map '{"255": 1}' its probabilities became liver and
    background without a word (liver Dice 0.08)."""
    from LiverTumorSegLib.errors import LabelError
    from LiverTumorSegLib.io import read_label_map
    from LiverTumorSegLib.io.labels import ANY_LABEL_VALUE
    from LiverTumorSegLib.io.writers import write_probability_map

    phantom = make_phantom(shape_zyx=(4, 12, 12), spacing_xyz=(2.0, 2.0, 3.0), seed=0)
    levels = np.linspace(0, 255, phantom.labels.size).reshape(phantom.labels.shape).round().astype(np.uint8)
    path = write_probability_map(tmp_path / f"case1_prob{suffix}", levels, phantom.ct.geometry)
    for allowed in ((0, 1, 2), ANY_LABEL_VALUE):
        with pytest.raises(LabelError, match=r"is a tumor probability map \(uint8, 255 x probability.*not a label "
                                             r"map.*--prob"):
            read_label_map(path, allowed_values=allowed)
    # an untagged 0/1/2 map is still a label map
    labels = write_label_map(tmp_path / f"case1_seg{suffix}", phantom.labels, phantom.ct.geometry)
    assert (read_label_map(labels).array == phantom.labels).all()


def test_the_advice_guesses_liver_and_tumor_only_where_the_map_matched_nothing():
    """A TotalSegmentator reference (spleen 1, right kidney 2, liver 5) under '{"5": 1}' was advised to add
    '"1": 1, "2": 2', which scores the spleen as liver and a kidney as tumor (the held-out script's audit). Where the
    map matches the file, each value left is named for the user to map; where it matches nothing (a 0/1/2 file
    under '{"255": 1}'), the 0/1/2 reading is still the example."""
    from LiverTumorSegLib.io.labels import unlisted_values_warning

    organs = np.zeros((2, 4, 4), np.int16)
    organs[0, :2], organs[0, 2:], organs[1] = 1, 2, 5
    said = unlisted_values_warning("ts.nii.gz", organs, {"5": 1})
    assert '"1": 1' not in said and "map each of 1, 2 to 1 (liver), 2 (tumor) or 0 (neither" in said
    plain = np.zeros((2, 4, 4), np.int16)
    plain[0], plain[1, :2] = 1, 2
    said = unlisted_values_warning("ref.nii.gz", plain, {"255": 1})
    assert "e.g. --label-map '{\"255\": 1, \"1\": 1, \"2\": 2}'" in said
