"""README's ``python -m pytest --test-seed 3`` (no test path: the tests are found through ``testpaths``) is taken.
The option was registered in Testing/Python/conftest.py, which pytest loads only after reading the command line
when no path names that folder, so the command README gives was refused: "unrecognized arguments: --test-seed"."""
import os
import subprocess
import sys

from script_helpers import ROOT


def test_test_seed_is_taken_without_a_test_path():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    # README's command, with testpaths narrowed to one quick file (collected only) instead of the whole suite
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--test-seed", "3", "--co", "-q",
                             "-o", "testpaths=Testing/Python/test_library_version.py"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "test_library_version.py" in result.stdout
