"""README's lesion table and follow-up printout (section *Lesion measurements (RECIST) and follow-up*) are what
``docs/examples/make_followup_example.py`` prints: the README tells a new user to run it and compare, and nothing
checked that the quoted text was still its output (its last two lines, the change report's and the picture's paths,
were missing)."""
import os
import re

import pytest

from script_helpers import ROOT, load_script

README = (ROOT / "README.md").read_text(encoding="utf-8")
ALIGNMENT = re.compile(r"alignment: ct, translation LPS \(([-\d.]+), ([-\d.]+), ([-\d.]+)\) mm, rotation ([\d.]+) deg, "
                       r"liver Dice after alignment ([\d.]+)")


def readme_followup_printout():
    """The lines of README's output block that follows its ``livertumorseg followup ... -o change.json`` command."""
    match = re.search(r"-o change\.json\n```\n```\n(.*?)\n```", README, flags=re.DOTALL)
    assert match, "README's follow-up example block moved: update this test"
    return match.group(1).splitlines()


def readme_lesion_table():
    """README's ``| lesion | volume mL | ...`` table rows and its sum of the targets' diameters."""
    start = README.index("| lesion | volume mL | long axis mm |")
    rows = README[start:].split("\n\n")[0].splitlines()
    total = re.search(r"sum of diameters of the targets: ([\d.]+) mm", README[start:])
    assert total, "README's lesion table lost its sum line: update this test"
    return rows, total.group(1)


@pytest.fixture(scope="module")
def example_output(tmp_path_factory):
    import contextlib
    import io

    out = tmp_path_factory.mktemp("followup_example")
    module = load_script("docs/examples/make_followup_example.py", "make_followup_example")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        module.main_example(out)
    return printed.getvalue().replace(str(out) + os.sep, "").splitlines()


def test_readme_lesion_table_is_the_examples(example_output):
    rows, total = readme_lesion_table()
    assert [line for line in rows if line in example_output] == rows
    assert f"sum of diameters: {total} mm" in example_output


def test_readme_followup_printout_is_the_examples(example_output):
    """Each line README quotes is printed, in README's order; the registration's numbers within rounding of another
    CPU's (0.2 mm, 0.2 degree, Dice 0.01), the rest exactly."""
    quoted = readme_followup_printout()
    start = example_output.index(quoted[0])
    printed = example_output[start:]
    assert len(printed) == len(quoted), (printed, quoted)
    for said, got in zip(quoted, printed):
        said_alignment, got_alignment = ALIGNMENT.fullmatch(said), ALIGNMENT.fullmatch(got)
        if said_alignment:
            assert got_alignment, got
            tolerances = (0.2, 0.2, 0.2, 0.2, 0.01)
            assert all(abs(float(a) - float(b)) <= t + 1e-9
                       for a, b, t in zip(said_alignment.groups(), got_alignment.groups(), tolerances)), (said, got)
        else:
            assert said == got
