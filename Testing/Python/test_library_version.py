"""The library's version: one number in pyproject.toml and LiverTumorSegLib.__version__, which every package records
(``library_version``) so that an older version's refusal of a newer package's setting can say "update"."""
import re
from pathlib import Path

from LiverTumorSegLib import __version__
from LiverTumorSegLib.package import _version_tuple, unknown_setting_advice

ROOT = Path(__file__).resolve().parents[2]


def test_pyproject_and_the_library_give_one_version():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    project = text[text.index("[project]"):]
    declared = re.search(r'^version\s*=\s*"([^"]+)"', project, re.M).group(1)
    assert declared == __version__
    assert _version_tuple(__version__) is not None  # whole numbers: the update advice compares them
    # every package written before 27 Nov 2026 records 0.1.0, however its keys differ; those written since record
    # a later number, so an older library meeting one of their new keys can tell the user to update
    assert _version_tuple(__version__) > (0, 1, 0)


def test_a_package_from_before_this_version_is_not_called_newer_and_one_after_it_is():
    # every package written before 27 Nov 2026 records 0.1.0; the bump made the comparison mean something
    assert "newer than this one" not in unknown_setting_advice({"library_version": "0.1.0"})
    major, minor = _version_tuple(__version__)[:2]
    newer = f"{major}.{minor + 1}.0"
    assert f"written by LiverTumorSeg {newer}, newer than this one ({__version__})" in \
        unknown_setting_advice({"library_version": newer})
