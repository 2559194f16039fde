"""SegmentationOptions: frozen, validated, dict and command-line round trips; one definition of the shared
choices (devices, backends, post-processing switches, suffixes) used by the CLI and the Slicer job."""
import dataclasses
import json

import pytest

from LiverTumorSegLib.cli import build_parser
from LiverTumorSegLib.errors import InputError
from LiverTumorSegLib.inference.options import (BACKENDS, DEVICE_CHOICES, POSTPROCESSING_SWITCHES,
                                                SegmentationOptions, options_from_args, override_window,
                                                segment_command_args)
from LiverTumorSegLib.inference.postprocess import PostprocessingOptions

NON_DEFAULT = SegmentationOptions(
    model="/models/my model.safetensors", device="cuda:1", backend="onnx", batch_size=6, threads=3, tta=True,
    two_stage=True, postprocessing=PostprocessingOptions(largest_liver_component=False, fill_liver_holes=False,
                                                         below_lungs=False, liver_dilation_mm=7.5,
                                                         min_lesion_ml=0.25),
    probabilities=True, allow_non_hu=True, window_level=55.0, window_width=350.0)


def parse_segment(extra):
    return build_parser().parse_args(["segment", "ct.nii.gz", "-o", "seg.nii.gz"] + extra)


def test_defaults_are_the_cli_defaults():
    assert options_from_args(parse_segment([])) == SegmentationOptions()
    assert SegmentationOptions().to_cli_args() == []


@pytest.mark.parametrize("options", [SegmentationOptions(), NON_DEFAULT,
                                     SegmentationOptions(postprocessing=PostprocessingOptions.disabled()),
                                     SegmentationOptions(device="cpu", backend="auto", threads=1)])
def test_cli_args_parse_back_to_an_equal_object(options):
    args = options.to_cli_args(probabilities_path="prob.nii.gz" if options.probabilities else None)
    again = options_from_args(parse_segment(args))
    assert again == options
    assert again.to_cli_args(probabilities_path="prob.nii.gz" if options.probabilities else None) == args


def test_dict_round_trip_through_json():
    data = json.loads(json.dumps(NON_DEFAULT.to_dict()))
    assert data["postprocessing"]["min_lesion_ml"] == 0.25 and data["device"] == "cuda:1"
    assert SegmentationOptions.from_dict(data) == NON_DEFAULT
    assert SegmentationOptions.from_dict({}) == SegmentationOptions()  # missing keys keep the defaults
    assert SegmentationOptions.from_dict({"postprocessing": {"min_lesion_ml": 0}}).postprocessing == \
        PostprocessingOptions(min_lesion_ml=0.0)


@pytest.mark.parametrize("data,field_named", [
    ({"devise": "cpu"}, "devise"),
    ({"postprocessing": {"min_lesion": 1}}, "min_lesion"),
    ({"device": "tpu"}, "device"),
    ({"backend": "tensorflow"}, "backend"),
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": 2.5}, "batch_size"),
    ({"threads": -1}, "threads"),
    ({"tta": "yes"}, "tta"),
    ({"two_stage": 1}, "two_stage"),
    ({"model": ""}, "model"),
    ({"postprocessing": {"min_lesion_ml": -0.1}}, "min_lesion_ml"),
    ({"postprocessing": {"fill_liver_holes": "no"}}, "fill_liver_holes"),
    ({"postprocessing": {"liver_dilation_mm": float("nan")}}, "liver_dilation_mm"),
    ({"postprocessing": {"min_lesion_probability": 1.5}}, "min_lesion_probability"),
    ({"postprocessing": {"uncertain_lesion_max_ml": -1}}, "uncertain_lesion_max_ml"),
    ({"window_level": 40}, "window_width"),
    ({"window_level": 40, "window_width": 0}, "window_width"),
    # huge or tiny windows overflowed float32 into NaN network input (exit 0, "no liver was found")
    ({"window_level": 1e308, "window_width": 1e308}, r"window_level / window_width .* must lie in -1500..3000 HU"),
    ({"window_level": 40, "window_width": 1e-300}, r"and 1..10000 HU"),
    # a margin of 1e9 mm took 24 GB in a dilation; inf crashed with OverflowError after the network
    ({"postprocessing": {"liver_dilation_mm": 1e9}}, r"--tumor-liver-margin-mm\) must be at most 100 mm"),
    ({"postprocessing": {"liver_dilation_mm": float("inf")}}, r"must be at most 100 mm"),
    # torch overflowed (an 'internal error') on 3,000,000,000 threads
    ({"threads": 3_000_000_000}, r"threads \(--threads\) must be a whole number of at least 1 and at most 1024"),
    ({"threads": 10 ** 20}, r"at most 1024"),
    # accepted, then written null in the strict-JSON report, which then did not load back
    ({"postprocessing": {"min_lesion_ml": float("inf")}}, r"min_lesion_ml \(--min-lesion-ml\) must be a finite"),
    ({"postprocessing": {"uncertain_lesion_max_ml": float("inf")}}, r"uncertain_lesion_max_ml .* finite"),
])
def test_bad_values_and_unknown_keys_name_the_field(data, field_named):
    with pytest.raises(InputError, match=field_named):
        SegmentationOptions.from_dict(data)


def test_frozen_and_replace_validates_again():
    options = SegmentationOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.device = "cpu"
    with pytest.raises(InputError, match="batch_size"):
        dataclasses.replace(options, batch_size=0)
    assert dataclasses.replace(options, device=" CPU ").device == "cpu"  # normalised
    assert hash(NON_DEFAULT) == hash(SegmentationOptions.from_dict(NON_DEFAULT.to_dict()))


def test_postprocessing_cannot_be_changed_past_validation():
    options = SegmentationOptions(postprocessing=PostprocessingOptions(min_lesion_ml=1))
    assert options.postprocessing.min_lesion_ml == 1.0  # converted to float by the check
    with pytest.raises(dataclasses.FrozenInstanceError):  # a mutable copy let -1 in after the check
        options.postprocessing.min_lesion_ml = -1.0
    with pytest.raises(InputError, match="min_lesion_ml"):
        dataclasses.replace(options, postprocessing=dataclasses.replace(options.postprocessing, min_lesion_ml=-1))


def test_every_postprocessing_field_has_a_cli_switch():
    fields = [f.name for f in dataclasses.fields(PostprocessingOptions)]
    assert sorted(s.field for s in POSTPROCESSING_SWITCHES) == sorted(fields)


def test_lesion_confidence_switches_on_the_command_line():
    post = options_from_args(parse_segment(["--min-lesion-probability", "0.8", "--uncertain-lesion-max-ml", "2"])
                             ).postprocessing
    assert post.min_lesion_probability == 0.8 and post.uncertain_lesion_max_ml == 2.0
    # not typed: the model's (its package's threshold, else 0.65), filled in once the package is known
    assert options_from_args(parse_segment([])).postprocessing.min_lesion_probability is None
    assert "--min-lesion-probability" not in SegmentationOptions().to_cli_args()  # a child run keeps the model's
    with pytest.raises(InputError, match="between 0 and 1"):
        options_from_args(parse_segment(["--min-lesion-probability", "65"]))  # a percentage by mistake
    round_trip = SegmentationOptions(postprocessing=post)
    assert options_from_args(parse_segment(round_trip.to_cli_args())).postprocessing == post


def test_no_postprocess_flag_turns_everything_off():
    assert options_from_args(parse_segment(["--no-postprocess"])).postprocessing == PostprocessingOptions.disabled()


def test_no_postprocess_with_a_post_processing_setting_is_refused():
    """--no-postprocess --min-lesion-ml 5 --keep-tubular-lesions ran with min_lesion_ml 0 recorded, no word said."""
    with pytest.raises(InputError, match="--no-postprocess turns every post-processing step off, so --min-lesion-ml, "
                                         "--keep-tubular-lesions would have no effect"):
        options_from_args(parse_segment(["--no-postprocess", "--min-lesion-ml", "5", "--keep-tubular-lesions"]))
    # typed at its default value it is still dropped: a user asking for a 0.1 mL minimum got a 0.108 mL lesion kept
    # and 0 recorded (it was accepted as "no contradiction")
    default_value = str(PostprocessingOptions().min_lesion_ml)
    with pytest.raises(InputError, match="--min-lesion-ml would have no effect"):
        options_from_args(parse_segment(["--no-postprocess", "--min-lesion-ml", default_value]))
    assert options_from_args(parse_segment(["--no-postprocess"])).postprocessing == PostprocessingOptions.disabled()


@pytest.mark.parametrize("flags,words", [
    (["--allow-tumor-outside-liver", "--tumor-liver-margin-mm", "3"], "--tumor-liver-margin-mm would have no effect"),
    (["--min-lesion-probability", "0", "--uncertain-lesion-max-ml", "3"], "--uncertain-lesion-max-ml would have")])
def test_a_setting_whose_step_another_flag_turns_off_is_refused(flags, words):
    """The report recorded a 3 mm margin (or a 3 mL cap) that never applied."""
    with pytest.raises(InputError, match=words):
        options_from_args(parse_segment(flags))
    # a library object with such a value gives child arguments without it (the command line would refuse them)
    post = PostprocessingOptions(tumor_inside_liver=False, liver_dilation_mm=3.0, min_lesion_probability=0.0,
                                 uncertain_lesion_max_ml=3.0)
    args = SegmentationOptions(postprocessing=post).to_cli_args()
    assert "--tumor-liver-margin-mm" not in args and "--uncertain-lesion-max-ml" not in args
    options_from_args(parse_segment(args))


@pytest.mark.parametrize("flags,words", [
    (["--min-lesion-probability", "0.8", "--uncertain-lesion-max-ml", "0"],
     "--uncertain-lesion-max-ml 0 leaves --min-lesion-probability no lesion to act on"),
    (["--min-lesion-probability", "0.8", "--min-lesion-ml", "5"],
     "--min-lesion-ml 5 already makes every lesion smaller than --uncertain-lesion-max-ml \\(5 mL\\) liver")])
def test_a_lesion_probability_that_no_lesion_can_meet_is_refused(flags, words):
    """The probability rule acts on lesions under --uncertain-lesion-max-ml: a cap of 0 (or one at most the
    --min-lesion-ml, whose step made those lesions liver already) left it none, and 0.8 was recorded."""
    with pytest.raises(InputError, match=words + ".*would have no effect"):
        options_from_args(parse_segment(flags))
    # a cap of 0 alone: the model's threshold stays (None), which is on, so the cap is not refused as having no effect
    assert options_from_args(parse_segment(["--uncertain-lesion-max-ml", "0"])).postprocessing.min_lesion_probability \
        is None
    post = options_from_args(parse_segment(["--min-lesion-probability", "0.8", "--min-lesion-ml", "4.9"])).postprocessing
    assert post.min_lesion_probability == 0.8
    # a library object so gives child arguments the command line takes, with the same (no) effect
    for post in (PostprocessingOptions(min_lesion_probability=0.8, uncertain_lesion_max_ml=0.0),
                 PostprocessingOptions(min_lesion_probability=0.8, min_lesion_ml=6.0)):
        args = SegmentationOptions(postprocessing=post).to_cli_args()
        assert "--min-lesion-probability" not in args
        options_from_args(parse_segment(args))
    args = SegmentationOptions(postprocessing=PostprocessingOptions.disabled()).to_cli_args()
    assert options_from_args(parse_segment(args)).postprocessing == PostprocessingOptions.disabled()


def test_probabilities_need_a_path_on_the_command_line():
    with pytest.raises(InputError, match="probabilities_path"):
        NON_DEFAULT.to_cli_args()


def test_cli_rejects_bad_values_with_the_flag_name(capsys):
    from LiverTumorSegLib.cli import main

    assert main(["segment", "ct.nii.gz", "-o", "s.nii.gz", "--window-level", "40", "--no-progress"]) == 2
    assert "--window-width" in capsys.readouterr().err


def test_one_list_of_devices_and_backends_everywhere():
    from LiverTumorSegLib.inference import device, engine
    from LiverTumorSegLib.inference.options import check_device_name

    assert DEVICE_CHOICES is device.DEVICE_CHOICES and BACKENDS is engine.BACKENDS
    assert check_device_name("cuda:0") == "cuda:0"
    parser_backend = [a for a in build_parser()._subparsers._group_actions[0].choices["segment"]._actions
                      if a.dest == "backend"][0]
    assert tuple(parser_backend.choices) == BACKENDS


def test_slicer_job_uses_the_library_definitions():
    pytest.importorskip("slicer")
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "LiverTumorSeg"))
    from LiverTumorSegModuleLib import job

    assert job.DEVICES is DEVICE_CHOICES and job.override_window is override_window


def test_override_window_changes_only_the_first_window_channel():
    pre = {"channels": [{"kind": "window", "preset": "liver"}, {"kind": "window", "level": 0, "width": 100}]}
    out = override_window(pre, 50, 350)
    assert out["channels"][0] == {"kind": "window", "level": 50.0, "width": 350.0}
    assert out["channels"][1] == pre["channels"][1] and pre["channels"][0] == {"kind": "window", "preset": "liver"}


def test_a_window_override_for_a_model_without_a_window_says_which_channels_it_has_and_what_to_drop():
    """A z-score model given --window-level / --window-width was told to 'clear the window override', words of
    neither the command line nor Python; the message names the model's channel kinds and the option to drop, in
    the caller's words. A width of 0 HU is refused by its own words."""
    from LiverTumorSegLib.errors import cli_wording

    zscore = {"channels": [{"kind": "zscore", "mask": "none"}, {"kind": "hist_scaled", "n_bins": 100}]}
    with pytest.raises(InputError) as from_python:
        override_window(zscore, 40, 400)
    with cli_wording(), pytest.raises(InputError) as from_cli:
        override_window(zscore, 40, 400)
    assert str(from_python.value) == ("This model's preprocessing has no intensity window to override (its "
                                      "channels: zscore, hist_scaled); leave window_level and window_width unset.")
    assert str(from_cli.value).endswith("; run without --window-level and --window-width.")
    with pytest.raises(InputError, match=r"^Window width must be positive \(got 0 HU\)\.$"):
        override_window({"channels": [{"kind": "window", "level": 40, "width": 400}]}, 40, 0)


def test_segment_command_args_for_a_child_process():
    argv = segment_command_args("in dir/ct.nrrd", "out.seg.nrrd", NON_DEFAULT, report_path="r.json",
                                probability_path="p.nii.gz", series="2", overwrite=True)
    args = build_parser().parse_args(argv)
    assert (args.command, args.input, args.output, args.report, args.probabilities) == \
        ("segment", "in dir/ct.nrrd", "out.seg.nrrd", "r.json", "p.nii.gz")
    assert args.series == "2" and args.overwrite and args.progress == "json" and args.preview is None
    assert options_from_args(args) == NON_DEFAULT
    plain = build_parser().parse_args(segment_command_args("ct.nii.gz", "s.nii.gz", SegmentationOptions()))
    assert options_from_args(plain) == SegmentationOptions() and not plain.overwrite


def test_options_that_can_only_fail_later_are_refused_at_once():
    """From an options audit: each of these passed construction and failed only after the CT was read and the
    model loaded (about 7 s), or never: an infinite window, ONNX with bf16, an invalid switch beside
    --no-postprocess."""
    with pytest.raises(InputError, match="finite numbers in HU"):
        SegmentationOptions(window_level=float("inf"), window_width=400.0)
    with pytest.raises(InputError, match="finite numbers in HU"):
        SegmentationOptions(window_level=40.0, window_width=float("inf"))
    with pytest.raises(InputError, match="bf16.*torch backend only") as onnx_bf16:
        SegmentationOptions(backend="onnx", precision="bf16")
    # the way out in the caller's words: it told a library call '--backend torch or auto, or --precision fp32'
    assert str(onnx_bf16.value).endswith("use backend='torch' or 'auto', or precision='fp32'.")
    from LiverTumorSegLib.errors import cli_wording
    with cli_wording(), pytest.raises(InputError, match="use --backend torch or auto, or --precision fp32"):
        SegmentationOptions(backend="onnx", precision="bf16")
    SegmentationOptions(backend="auto", precision="bf16")  # auto picks torch for bf16
    with pytest.raises(InputError, match="min_lesion_probability"):
        options_from_args(parse_segment(["--no-postprocess", "--min-lesion-probability", "5"]))
    assert options_from_args(parse_segment(["--no-postprocess"])).postprocessing == PostprocessingOptions.disabled()


@pytest.mark.parametrize("kwargs, words", [({"threads": -1}, "threads"), ({"threads": 0}, "threads"),
                                           ({"batch_size": 2.7}, "batch_size"), ({"batch_size": True}, "batch_size")])
def test_engine_refuses_what_the_options_refuse(kwargs, words):
    """Through the engine directly, threads=-1 was a torch RuntimeError, 0 meant all cores, 2.7 became 2."""
    pytest.importorskip("torch")
    from LiverTumorSegLib.inference.engine import SliceInferenceEngine

    from inference_helpers import oracle_package, oracle_predictor

    with pytest.raises(InputError, match=words):
        SliceInferenceEngine(oracle_package(), device="cpu", batch_predictor=oracle_predictor, **kwargs)


def test_a_cuda_request_that_runs_on_the_cpu_is_in_the_report(monkeypatch):
    """--device cuda without a GPU falls back to the CPU (as TotalSegmentator does); the report's warnings say so."""
    torch = pytest.importorskip("torch")
    from LiverTumorSegLib.inference.engine import SliceInferenceEngine
    from LiverTumorSegLib.inference.segmenter import Segmenter

    from inference_helpers import corner_phantom, oracle_package, oracle_predictor

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    engine = SliceInferenceEngine(oracle_package(), device="cuda", threads=1, batch_predictor=oracle_predictor)
    result = Segmenter(engine=engine).segment_volume(corner_phantom().ct)
    assert any("CUDA was requested" in w and "running on the CPU" in w for w in result.report["warnings"])


def test_numpy_integers_are_whole_numbers_for_counts():
    """SegmentationOptions(batch_size=np.int64(4)) was refused (an API audit): a count from numpy is a count."""
    import numpy as np
    assert SegmentationOptions(batch_size=np.int64(4), threads=np.int32(2)).batch_size == 4


def test_numpy_numbers_are_numbers_and_stored_as_python_floats():
    """np.float32(40) was refused as 'must be finite numbers' while np.float64 and numpy integers passed."""
    import numpy as np

    options = SegmentationOptions(window_level=np.float32(40), window_width=np.float32(400), batch_size=np.int64(4),
                                  postprocessing=PostprocessingOptions(min_lesion_ml=np.float32(0.5)))
    assert (options.window_level, options.window_width, options.batch_size) == (40.0, 400.0, 4)
    assert type(options.window_level) is float and type(options.postprocessing.min_lesion_ml) is float
    assert json.loads(json.dumps(options.to_dict())) == options.to_dict()
    with pytest.raises(InputError, match="must be true or false"):
        SegmentationOptions(postprocessing=PostprocessingOptions(fill_liver_holes=np.float32(1)))


@pytest.mark.parametrize("text", ["cuda:²", "cuda:١", "cuda:", "cuda:-1", "cuda:0x"])
def test_a_cuda_index_is_ascii_digits(text, monkeypatch):
    """'cuda:²' passed the option check ('²'.isdigit() is True) and then failed in int() on a CUDA machine with an
    internal error."""
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.inference import device
    from LiverTumorSegLib.inference.options import check_device_name

    with pytest.raises(InputError, match="unknown device"):
        check_device_name(text)
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(InputError, match="does not exist"):  # the library's own parse, a GPU simulated
        device.resolve_device(text, cuda_available=True)
