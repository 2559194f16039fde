"""The lesion confidence step read by each lesion's peak tumor probability (``lesion_probability_statistic``):
known answers for the statistic, the step, the lesion report, the command line and the package's record."""
import numpy as np
import pytest

from LiverTumorSegLib.errors import InputError
from LiverTumorSegLib.inference.postprocess import (PostprocessingOptions, component_mean_probability,
                                                    component_peak_probability, postprocess_labels,
                                                    with_min_lesion_probability)


def test_peak_counts_the_network_tumor_voxels_else_the_whole_lesion():
    components = np.zeros((1, 1, 7), np.int32)
    components[0, 0, :4] = 1               # lesion 1: network tumor at p 200 and 100; filled voxels at 0 and 250
    components[0, 0, 4:6] = 2              # lesion 2: no network-tumor voxel (p 51, 153): its whole peak
    probability = np.array([[[200, 100, 0, 250, 51, 153, 255]]], np.uint8)   # the last voxel is no lesion's
    network = np.array([[[True, True, False, False, False, False, True]]])
    peak = component_peak_probability(components, 2, probability, network)
    assert peak.tolist() == [0.0, 200 / 255, 153 / 255]
    assert component_peak_probability(components, 2, probability).tolist() == [0.0, 250 / 255, 153 / 255]
    as_float = component_peak_probability(components, 2, probability.astype(np.float32) / 255, network)
    assert as_float[1:] == pytest.approx(peak[1:])
    assert component_peak_probability(components, 2, np.full((1, 1, 7), 1.7, np.float32))[1:].tolist() == [1.0, 1.0]


def _two_small_lesions():
    """A liver slab (1 mm voxels) with two 5 x 5 x 5 mm lesions (0.125 mL): ``sure`` with a sure centre voxel (p 1.0)
    in a lukewarm rest (p 0.7; mean 0.702), ``even`` at p 0.8 throughout (mean and peak 0.8)."""
    labels = np.zeros((20, 40, 60), np.uint8)
    labels[2:18, 2:38, 2:58] = 1
    probability = np.zeros(labels.shape, np.uint8)
    sure, even = (slice(8, 13), slice(10, 15), slice(10, 15)), (slice(8, 13), slice(10, 15), slice(40, 45))
    labels[sure] = labels[even] = 2
    probability[sure] = 179                 # 0.702
    probability[10, 12, 12] = 255           # its sure centre
    probability[even] = 204                 # 0.8
    return labels, probability, sure, even


@pytest.mark.parametrize("statistic,threshold,kept", [("mean", 0.75, "even"), ("peak", 0.99, "sure"),
                                                      ("peak", 0.75, "both"), ("mean", 0.65, "both")])
def test_the_step_turns_into_liver_the_lesions_whose_statistic_is_below_the_threshold(statistic, threshold, kept):
    labels, probability, sure, even = _two_small_lesions()
    assert component_mean_probability(*_labelled(labels), probability)[1:] == pytest.approx(
        [(124 * 179 + 255) / (125 * 255), 0.8])
    changes = {}
    options = PostprocessingOptions(min_lesion_probability=threshold, lesion_probability_statistic=statistic)
    out = postprocess_labels(labels, (1.0, 1.0, 1.0), options, tumor_probability_zyx=probability, changes=changes)
    for lesion, name in ((sure, "sure"), (even, "even")):  # kept whole as tumor, or made liver whole
        assert (out[lesion] == (2 if kept in (name, "both") else 1)).all()
    records = changes["tumor_components"]
    assert len(records) == (0 if kept == "both" else 1)
    if records:  # the record carries both numbers, whichever the step read
        gone = 0.8 if kept == "sure" else 1.0
        assert records[0]["rule"] == "uncertain" and records[0]["peak_tumor_probability"] == pytest.approx(gone)


def _labelled(labels):
    from scipy import ndimage

    return ndimage.label(labels == 2, structure=np.ones((3, 3, 3), bool))


def test_the_lesion_report_gives_each_lesion_its_peak():
    from LiverTumorSegLib.inference.lesion_report import lesion_report
    from LiverTumorSegLib.volume import ImageGeometry

    labels, probability, sure, even = _two_small_lesions()
    lesions = lesion_report(labels, ImageGeometry(spacing=(1.0, 1.0, 1.0)), tumor_probability_zyx=probability,
                            network_labels_zyx=labels)["lesions"]
    by_peak = sorted((round(d["peak_tumor_probability"], 4), round(d["mean_tumor_probability"], 4)) for d in lesions)
    assert by_peak == [(0.8, 0.8), (1.0, round((124 * 179 + 255) / (125 * 255), 4))]
    assert "peak_tumor_probability" not in lesion_report(labels, ImageGeometry(spacing=(1.0, 1.0, 1.0)))["lesions"][0]


def test_the_model_statistic_fills_only_an_unset_one():
    unset = PostprocessingOptions()
    assert with_min_lesion_probability(unset, None).lesion_probability_statistic == "mean"
    assert with_min_lesion_probability(unset, 0.99, "peak").lesion_probability_statistic == "peak"
    typed = PostprocessingOptions(lesion_probability_statistic="mean", min_lesion_probability=0.8)
    assert with_min_lesion_probability(typed, 0.99, "peak") == typed  # what the user typed stays


def test_the_segmenter_reads_a_package_by_its_recorded_statistic():
    from LiverTumorSegLib.inference import SegmentationOptions
    from LiverTumorSegLib.inference.segmenter import model_postprocessing

    peak = {"postprocessing": {"min_lesion_probability": 0.99, "lesion_probability_statistic": "peak"}}
    ran = model_postprocessing(SegmentationOptions(), peak)
    assert (ran.min_lesion_probability, ran.lesion_probability_statistic) == (0.99, "peak")
    ran = model_postprocessing(SegmentationOptions(), {"postprocessing": {"min_lesion_probability": 0.75}})
    assert (ran.min_lesion_probability, ran.lesion_probability_statistic) == (0.75, "mean")
    typed = SegmentationOptions(postprocessing=PostprocessingOptions(lesion_probability_statistic="mean"))
    ran = model_postprocessing(typed, peak)
    assert (ran.min_lesion_probability, ran.lesion_probability_statistic) == (0.99, "mean")


def test_the_command_line_takes_the_statistic_and_refuses_it_where_no_step_reads_it():
    from LiverTumorSegLib.cli import build_parser
    from LiverTumorSegLib.inference import SegmentationOptions
    from LiverTumorSegLib.inference.options import options_from_args

    def parsed(extra):
        return options_from_args(build_parser().parse_args(["segment", "ct.nii.gz", "-o", "s.nii.gz"] + extra))

    chosen = parsed(["--lesion-probability-statistic", "peak", "--min-lesion-probability", "0.99"])
    assert chosen.postprocessing == PostprocessingOptions(min_lesion_probability=0.99,
                                                          lesion_probability_statistic="peak")
    assert parsed([]).postprocessing.lesion_probability_statistic is None  # the model's
    args = chosen.to_cli_args()
    assert args[args.index("--lesion-probability-statistic") + 1] == "peak" and parsed(args) == chosen
    with pytest.raises(InputError, match="--min-lesion-probability 0 turns off the step that "
                                         "--lesion-probability-statistic sets"):
        parsed(["--lesion-probability-statistic", "peak", "--min-lesion-probability", "0"])
    with pytest.raises(SystemExit):
        parsed(["--lesion-probability-statistic", "median"])
    with pytest.raises(InputError, match=r"lesion_probability_statistic .* must be one of mean, peak"):
        SegmentationOptions(postprocessing={"lesion_probability_statistic": "max"})


def test_a_package_recording_a_statistic_without_a_threshold_is_refused_as_the_writer_refuses_it():
    """set_package_min_lesion_probability refuses a statistic without a threshold, but loading took such metadata
    (edited by hand): segment then compared each lesion's peak with the default 0.65 while 'models' showed no
    threshold line (the models audit, 1 Dec 2026)."""
    from LiverTumorSegLib.package import model_postprocessing_problem

    assert model_postprocessing_problem({"postprocessing": {"lesion_probability_statistic": "peak"}}) == (
        "records lesion_probability_statistic without min_lesion_probability, the threshold it is read at")
    assert model_postprocessing_problem({"postprocessing": {"min_lesion_probability": 0.99,
                                                            "lesion_probability_statistic": "peak"}}) is None
