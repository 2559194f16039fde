"""The docs never speak of a library version newer than the code's: 'since 0.6.23' stood in the docs while the code
still said 0.6.22 (the packaging audit), so a user of 0.6.22 read of behaviour as theirs that was not."""
import re
from pathlib import Path

from LiverTumorSegLib import __version__

ROOT = Path(__file__).resolve().parents[2]
VERSION_RE = re.compile(r"\b(?:since|before|from|in|until|of) (?:library )?(\d+)\.(\d+)\.(\d+)\b")


def _as_tuple(text):
    return tuple(int(part) for part in text.split("."))


def test_no_doc_names_a_version_after_the_codes():
    current = _as_tuple(__version__)
    pages = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
    later = []
    for page in pages:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
            for match in VERSION_RE.finditer(line):
                named = tuple(int(g) for g in match.groups())
                if named > current:
                    later.append(f"{page.name}:{number}: {match.group(0)}")
    assert later == [], f"the code is {__version__}: {later[:10]}"


def test_the_changelog_has_an_entry_for_the_codes_version():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"  - {__version__} (" in readme
