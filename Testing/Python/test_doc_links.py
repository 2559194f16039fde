"""Relative links in README.md and the Markdown files beside it resolve: the file exists and, for ``file.md#anchor``
(or ``#anchor`` in the same file), a heading with that GitHub anchor exists. README's long records moved into
docs/ (27 Nov 2026); a later move or a renamed heading must not leave a reader at a dead link. Also checked:
repository paths named in backticks exist, options shown with a ``livertumorseg`` command are that command's,
and the defaults the text states are argparse's."""
import re
from pathlib import Path
from typing import List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"```.*?```", flags=re.DOTALL)


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading's text: lower case, punctuation other than ``-`` and ``_`` dropped,
    spaces made ``-``."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(markdown: str) -> Set[str]:
    """Every heading anchor of a Markdown text (outside code fences); a repeated heading gets ``-1``, ``-2``, ..."""
    found, seen = set(), {}
    for line in FENCE.sub("", markdown).splitlines():
        match = re.match(r"^#{1,6} (.*)", line)
        if match:
            anchor = github_anchor(match.group(1))
            count = seen.get(anchor, 0)
            seen[anchor] = count + 1
            found.add(anchor if count == 0 else f"{anchor}-{count}")
    return found


def dead_links(markdown_file: Path) -> List[Tuple[str, str]]:
    """``(link, why)`` for each relative link of ``markdown_file`` whose file or heading anchor does not exist.
    Links with a scheme (``https:``, ``mailto:``) and links inside code fences are not checked."""
    dead = []
    for target in LINK.findall(FENCE.sub("", markdown_file.read_text(encoding="utf-8"))):
        if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (markdown_file.parent / path) if path else markdown_file
        if not linked.exists():
            dead.append((target, "no such file"))
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text(encoding="utf-8")):
            dead.append((target, "no such heading"))
    return dead


def documentation_files() -> List[Path]:
    """README.md, docs/*.md and the READMEs of the project's folders (not a virtual environment's)."""
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
    for folder in ("LiverTumorSeg", "LiverTumorSegLib", "Testing", "Resources", "LICENSES", "benchmarks", "scripts"):
        files += sorted((ROOT / folder).glob("**/README.md"))
    return files


def test_github_anchor_of_known_headings():
    assert github_anchor("Speed (measured; scripts in `benchmarks/`)") == "speed-measured-scripts-in-benchmarks"
    assert github_anchor("Lesion measurements (RECIST) and follow-up") == "lesion-measurements-recist-and-follow-up"
    assert github_anchor("Where issue 13's targets stand") == "where-issue-13s-targets-stand"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}


def test_dead_links_finds_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "other.md").write_text("# Present\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text("# Here\n[ok](other.md#present) [ok](#here) [web](https://example.org/x)\n"
                    "[gone](missing.md) [bad](other.md#absent) [self](#nowhere)\n```\n[fenced](nope.md)\n```\n",
                    encoding="utf-8")
    assert dead_links(page) == [("missing.md", "no such file"), ("other.md#absent", "no such heading"),
                                ("#nowhere", "no such heading")]


@pytest.mark.parametrize("markdown_file", documentation_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(markdown_file):
    assert dead_links(markdown_file) == []


# Files a user reads as a description of the code as it is (the model records under docs/ also name files kept only
# in git history, such as docs/candidates/*.safetensors, and are left out).
CURRENT_DOCS = ("README.md", "docs/cli.md", "docs/report_format.md", "docs/bad_inputs.md", "docs/slicer.md",
                "docs/ARCHITECTURE.md")
QUOTED_PATH = re.compile(r"^(?:LiverTumorSegLib|LiverTumorSeg|Testing|Resources|benchmarks|scripts|docs)/[\w./-]*$")
PLACEHOLDER_PATHS = {"docs/default_model_vN.md"}  # "each in its own docs/default_model_vN.md"


def missing_quoted_paths(markdown: str, root: Path) -> List[str]:
    """Repository paths written in backticks (`scripts/x.py`, `LiverTumorSegLib/inference/body_size.py`), not as
    links, that do not exist under ``root``; code fences are left out, ``*`` globs and ``{a,b}`` lists skipped."""
    missing = []
    for span in re.findall(r"`([^`\n]+)`", FENCE.sub("", markdown)):
        for token in re.split(r"[\s,;()]+", span):
            token = token.strip(".:")
            if QUOTED_PATH.match(token) and token not in PLACEHOLDER_PATHS and not (root / token).exists():
                missing.append(token)
    return missing


def test_missing_quoted_paths_finds_a_path_that_is_gone(tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "here.py").write_text("", encoding="utf-8")
    text = "Run `python scripts/here.py` or `scripts/gone.py --x`; `docs/*.md`; `not/a/project/path.py`\n"
    assert missing_quoted_paths(text, tmp_path) == ["scripts/gone.py"]


@pytest.mark.parametrize("name", CURRENT_DOCS)
def test_quoted_repository_paths_exist(name):
    """A file the docs name in backticks (a script to run, a module to read) exists: the link test sees links only."""
    assert missing_quoted_paths((ROOT / name).read_text(encoding="utf-8"), ROOT) == []


# Options the docs show on the command line exist, for the command they are shown with (a renamed or removed option
# left in a usage line sends a user to "unrecognized arguments"), and the defaults the text states are argparse's.
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
USAGE_SPAN = re.compile(r"livertumorseg (\w+)([^`\n]*)")
OTHER_TOOLS_OPTIONS = {"--nproc_per_node", "--nproc"}  # torchrun's, in docs/cli.md's train section


def command_options():
    """``{command: {option strings}}`` of the ``livertumorseg`` parser, plus ``""`` for its top-level options."""
    import argparse

    from LiverTumorSegLib.cli import build_parser

    parser = build_parser()
    options = {"": {o for action in parser._actions for o in action.option_strings}}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                options[name] = {o for a in sub._actions for o in a.option_strings}
    return options


def unknown_usage_options(markdown: str, options) -> List[Tuple[str, str]]:
    """``(command, option)`` for each option written after ``livertumorseg COMMAND`` on one line of a code span or
    block of ``markdown`` that neither COMMAND nor the top level takes (also an unknown COMMAND, as ``(command, "")``)."""
    unknown = []
    for command, rest in USAGE_SPAN.findall(markdown):
        if command == "COMMAND":  # "livertumorseg COMMAND --help"
            continue
        if command not in options:
            unknown.append((command, ""))
            continue
        unknown += [(command, o) for o in OPTION.findall(rest) if o not in options[command] | options[""]]
    return unknown


def test_unknown_usage_options_finds_a_removed_option_and_command():
    options = {"": {"--debug"}, "segment": {"--model", "--report"}, "evaluate": {"--prob"}}
    text = ("`livertumorseg segment ct -o x --model m --report r.json --tta-flip`, `livertumorseg --debug`\n"
            "`livertumorseg evaluate --prob P --probs Q` and `livertumorseg segmnt x`; `livertumorseg COMMAND --help`")
    assert unknown_usage_options(text, options) == [("segment", "--tta-flip"), ("evaluate", "--probs"),
                                                    ("segmnt", "")]


@pytest.mark.parametrize("name", CURRENT_DOCS)
def test_options_shown_with_a_command_exist(name):
    assert unknown_usage_options((ROOT / name).read_text(encoding="utf-8"), command_options()) == []


def test_every_option_docs_cli_names_exists():
    """docs/cli.md names options across commands (``evaluate --prob`` in segment's section); each is some command's."""
    every = set().union(*command_options().values()) | OTHER_TOOLS_OPTIONS
    assert sorted(set(OPTION.findall((ROOT / "docs" / "cli.md").read_text(encoding="utf-8"))) - every) == []


def cli_md_sections(markdown: str):
    """``{command: text}`` of docs/cli.md's ``## livertumorseg COMMAND ...`` sections (segment's two joined)."""
    sections = {}
    for section in ("\n" + markdown).split("\n## ")[1:]:
        command = re.match(r"livertumorseg (\w+)", section)
        if command:
            sections[command.group(1)] = sections.get(command.group(1), "") + section
    return sections


# Commands whose docs/cli.md section has the long form, "every option's meaning" (README: The command line); train's
# section names its main options and sends the reader to `train --help` for the rest. Spellings of an option the
# section names otherwise, which docs/cli.md's introduction lists once.
FULLY_DOCUMENTED_COMMANDS = ("segment", "preprocess", "evaluate")
OTHER_SPELLINGS = {"--help", "--output", "--output-dir", "--no-progress-bar"}


def test_cli_md_sections_reads_each_command_once():
    text = "# T\n## livertumorseg segment (one CT)\na `--x`\n## livertumorseg segment (a folder)\n`--y`\n## Other\n"
    assert {c: OPTION.findall(t) for c, t in cli_md_sections(text).items()} == {"segment": ["--x", "--y"]}


@pytest.mark.parametrize("command", FULLY_DOCUMENTED_COMMANDS)
def test_every_option_of_a_fully_documented_command_is_in_its_cli_md_section(command):
    """``livertumorseg COMMAND --help``'s options are each in docs/cli.md's section of COMMAND (the check above runs
    the other way): `preprocess`'s and `evaluate`'s tables had no `--no-progress`, which README says every
    long-running command takes; the other spellings are in docs/cli.md's introduction."""
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    introduction = text.split("\n## ")[0]
    assert sorted(o for o in OTHER_SPELLINGS if o != "--help" and o not in OPTION.findall(introduction)) == []
    named = set(OPTION.findall(cli_md_sections(text)[command]))
    assert sorted(o for o in command_options()[command] if o.startswith("--") and o not in named | OTHER_SPELLINGS) \
        == []


def _default(command: str, option: str):
    from LiverTumorSegLib.cli import build_parser

    parser = build_parser()
    argv = {"segment": ["ct.nii.gz", "-o", "seg.nii.gz"], "preprocess": ["ct.nii.gz", "-o", "p.png"],
            "evaluate": ["--pred", "p", "--ref", "r", "-o", "o"], "followup": ["--baseline", "a", "--followup", "b",
                                                                              "-o", "c.json"]}[command]
    return getattr(parser.parse_args([command] + argv), option.lstrip("-").replace("-", "_"))


@pytest.mark.parametrize("name, pattern, command, option", [
    ("docs/cli.md", r"\| `--slices N` \| (\d+) \|", "preprocess", "--slices"),
    ("docs/cli.md", r"\| `--detection-iou IOU` \| ([\d.]+) \| A lesion is detected above this IoU", "evaluate",
     "--detection-iou"),
    ("docs/cli.md", r"\| `--rank-metric COLUMN` \| `(\w+)` \|", "evaluate", "--rank-metric"),
    ("README.md", r"`--min-new-lesion-mm`, (\d+) by default", "followup", "--min-new-lesion-mm"),
])
def test_a_default_the_docs_state_is_the_parsers(name, pattern, command, option):
    stated = re.search(pattern, (ROOT / name).read_text(encoding="utf-8"))
    assert stated, f"{name} no longer says {pattern!r}: update this test with the text"
    default = _default(command, option)
    assert (stated.group(1) == default) if isinstance(default, str) else float(stated.group(1)) == default


TABLE_CELL_BORDER = re.compile(r"(?<!\\)\|")  # a table's "|", not the escaped "\|" inside a cell


def stated_table_defaults(markdown: str) -> List[Tuple[str, str, str]]:
    """``(command, option, default cell)`` for each row of an ``| Option | Default | What it does |`` table in a
    ``## livertumorseg COMMAND`` section whose default cell is not empty; a row naming two options
    (```--a` / `--b``) with two defaults (``5 / off``) gives one each."""
    stated = []
    for section in ("\n" + markdown).split("\n## ")[1:]:
        command = re.match(r"livertumorseg (\w+)", section)
        table = None
        for line in section.splitlines():
            if line.startswith("| Option | Default |"):
                table = True
            elif not line.startswith("|"):
                table = None
            elif table and not line.startswith("|---"):
                cells = TABLE_CELL_BORDER.split(line)
                if not (command and len(cells) >= 5 and cells[2].strip()):
                    continue
                options = [OPTION.search(part) for part in cells[1].split(" / ")]
                defaults = [d.strip() for d in cells[2].split(" / ")]
                if len(options) != len(defaults):  # `--folds K --fold I` | 0 / 0
                    options = list(OPTION.finditer(cells[1]))
                if len(options) == len(defaults):
                    stated += [(command.group(1), o.group(0), d) for o, d in zip(options, defaults) if o]
    return stated


def test_stated_table_defaults_reads_a_table():
    text = ("## livertumorseg segment\n\n| Option | Default | What it does |\n|---|---|---|\n"
            "| `INPUT` | | the CT |\n| `--a N` / `--b` | 5 (mm) / off | x \\| y |\n| `--c x\\|y` | `x` | z |\n"
            "| `--e K --f I` | 0 / 1 | two in one cell |\n\n"
            "| Option | What it does |\n|---|---|\n| `--d` | w |\n")
    assert stated_table_defaults(text) == [("segment", "--a", "5 (mm)"), ("segment", "--b", "off"),
                                           ("segment", "--c", "`x`"), ("segment", "--e", "0"), ("segment", "--f", "1")]


def test_every_default_docs_cli_tables_state_is_the_parsers():
    """docs/cli.md's options tables give each option's default. Where argparse has one, or, for segment's
    post-processing numbers (argparse None), :class:`PostprocessingOptions` has it, the table's must be it: "off"
    for a switch, the value for the rest; a default changed in the code would have left the table wrong. Defaults
    the hardware or the model decide (``--batch-size``, ``--threads``, the window) are not checked. ``train``'s and
    ``crossval``'s options are all None in argparse (a ``--config`` file's value must win over a default): their
    defaults are :class:`TrainConfig`'s, and were not checked before; a default described in words (``--name``'s
    "the file's name") is not compared."""
    import argparse
    import dataclasses

    from LiverTumorSegLib.cli import build_parser
    from LiverTumorSegLib.inference.options import POSTPROCESSING_SWITCHES
    from LiverTumorSegLib.inference.postprocess import PostprocessingOptions
    from LiverTumorSegLib.training.config import TrainConfig

    parsers = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)][0].choices
    postprocessing = {f.name: f.default for f in dataclasses.fields(PostprocessingOptions)}
    value_defaults = {s.flag: postprocessing[s.field] for s in POSTPROCESSING_SWITCHES if s.kind == "value"}
    training = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    checked, checked_training, wrong = 0, 0, []
    for command, option, cell in stated_table_defaults((ROOT / "docs" / "cli.md").read_text(encoding="utf-8")):
        action = next(a for a in parsers[command]._actions if option in a.option_strings)
        default = action.default
        if default is None and command == "segment":
            default = value_defaults.get(option)
        if default is None and command in ("train", "crossval"):
            default = training.get(action.dest)
            if default in ("", dataclasses.MISSING):
                continue
            checked_training += default is not None
        if default is None:
            continue
        checked += 1
        number = re.match(r"[\d.]+", cell)
        if isinstance(default, bool):
            ok = cell == ("on" if default else "off")
        elif isinstance(default, (int, float)):
            ok = number is not None and float(number.group(0)) == default
        else:
            ok = cell == f"`{default}`"
        if not ok:
            wrong.append((command, option, cell, default))
    assert checked >= 25 and checked_training >= 8 and wrong == []


def rows_with_another_cell_count(markdown: str) -> List[Tuple[int, int, int]]:
    """``(line number, cells, header cells)`` for each table row of ``markdown`` with more cells than its table's
    header: GitHub drops the excess cells, so what they say is never shown. Cells are counted by their unescaped
    ``|`` (a ``|`` inside a code span is a border too, as GitHub reads it); code fences are left out."""
    found, header, fenced = [], None, False
    for number, line in enumerate(markdown.splitlines(), 1):
        if line.startswith("```"):
            fenced = not fenced
        if fenced or not line.startswith("|"):
            header = None
            continue
        cells = len(TABLE_CELL_BORDER.findall(line)) - 1
        if header is None:
            header = cells
        elif cells > header:
            found.append((number, cells, header))
    return found


def test_rows_with_another_cell_count_finds_an_extra_cell():
    text = "| a | b |\n|---|---|\n| x | `y \\| z` |\n| x | train | the message |\n\n| c | d | e |\n|---|---|---|\n| 1 | 2 | 3 |\n"
    assert rows_with_another_cell_count(text) == [(4, 3, 2)]


@pytest.mark.parametrize("name", CURRENT_DOCS)
def test_no_table_row_has_more_cells_than_its_header(name):
    """docs/bad_inputs.md's issue-15 table (input | message) held two rows with a third cell, the commands, copied
    from the three-column table below it: GitHub showed those rows without their message."""
    assert rows_with_another_cell_count((ROOT / name).read_text(encoding="utf-8")) == []


def test_every_training_log_column_is_documented_in_report_format():
    """log.csv's validation columns were documented nowhere: a researcher could not tell they are slice-level Dice
    on the network grid (synthetic tumors in tumor-free validation cases), nor what early stopping follows (the
    training run-time audit). Each column has a row of the table in docs/report_format.md."""
    from LiverTumorSegLib.training.logs import LOG_COLUMNS

    text = (ROOT / "docs" / "report_format.md").read_text(encoding="utf-8")
    section = text.split("## `train`'s `log.csv`", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| `([a-z_]+)`(?:, `([a-z_]+)`)? \|", section, re.M))
    documented = {name for pair in rows for name in pair if name}
    assert documented == set(LOG_COLUMNS)
