"""User-facing text names the papers and methods, never the project's internal "seed 00N" labels; the former
preset names still load (issue 14)."""
import re
from pathlib import Path

import pytest

from LiverTumorSegLib.cli import build_parser, main
from LiverTumorSegLib.preprocessing import PreprocessingConfig, available_presets

INTERNAL = re.compile(r"seed ?0\d\d|seeds'|seeds 0\d\d", re.IGNORECASE)
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize("command", ["segment", "preprocess", "models", "train", "crossval", "evaluate"])
def test_help_texts_do_not_name_internal_seeds(command):
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    assert not INTERNAL.search(sub.format_help())


def test_help_texts_do_not_say_default_twice():
    """segment's --model read '(default default: the bundled model; ...)': the value 'default' after the word,
    unquoted (the quoted '(default: 'default', the bundled model's; ...)' of preprocess --preset reads as meant)."""
    commands = build_parser()._subparsers._group_actions[0].choices
    for command, sub in commands.items():
        text = " ".join(sub.format_help().split())
        assert not re.search(r"\bdefault:? default\b", text, re.IGNORECASE), (command, text)
    segment = " ".join(commands["segment"].format_help().split())
    assert "(default: the bundled model, named 'default'; 'livertumorseg models' lists them)" in segment


def test_architecture_list_names_papers_not_seeds(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert not INTERNAL.search(out) and "Elmenabawy et al." in out and "Li et al." in out


def test_readme_does_not_name_internal_seeds():
    assert not INTERNAL.findall(README.read_text(encoding="utf-8"))


def test_preset_names_describe_methods_and_former_names_still_load():
    assert not [name for name in available_presets() if name.startswith("seed")]
    for old, new in (("seed000", "zscore_body"), ("seed001", "two_windows_histscaled"),
                     ("seed002", "window250_equalized"), ("seed004", "wide_equalized_median")):
        assert PreprocessingConfig.preset(old).to_dict() == PreprocessingConfig.preset(new).to_dict()
    # a model package stores its channels; one written with the former window preset name still loads
    config = PreprocessingConfig.from_dict({"channels": [{"kind": "window", "preset": "seed002"}],
                                            "context_slices": 0})
    assert (config.channels[0]["level"], config.channels[0]["width"]) == (0.0, 250.0)
    assert config.channels[0]["preset"] == "centre0_width250"


def test_preprocess_accepts_a_former_preset_name_without_listing_it():
    parser = build_parser()
    assert parser.parse_args(["preprocess", "ct.nii.gz", "-o", "p.png", "--preset", "seed001"]).preset == \
        "two_windows_histscaled"
    help_text = parser._subparsers._group_actions[0].choices["preprocess"].format_help()
    assert "two_windows_histscaled" in help_text and "seed001" not in help_text


def _example_blocks(text: str):
    return re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)


def test_readme_examples_in_one_block_do_not_overwrite_each_others_outputs():
    output_flags = {"-o", "--output", "--preview", "--report", "--probabilities", "--output-dir"}
    blocks = _example_blocks(README.read_text(encoding="utf-8"))
    checked = 0  # output paths looked at: with no ```bash block (or none naming an output) the loop checked nothing
    for block in blocks:
        written = []
        for line in block.splitlines():
            words = line.split("#")[0].split()
            if not words or words[0] != "livertumorseg":
                continue
            written += [words[i + 1] for i, w in enumerate(words[:-1]) if w in output_flags]
        assert len(written) == len(set(written)), f"README example block writes one file twice: {written}"
        checked += len(written)
    assert len(blocks) >= 3 and checked >= 3, f"the README's ```bash examples were not found ({len(blocks)} blocks)"
