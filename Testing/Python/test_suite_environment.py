"""The suite's own set-up (conftest.py): its child processes write and reuse bytecode even where the shell sets
PYTHONDONTWRITEBYTECODE, and the setting is put back as it was after the run."""
import os
import subprocess
import sys

import conftest


def test_the_setting_is_taken_out_for_the_children_and_put_back_after():
    environ = {"PYTHONDONTWRITEBYTECODE": "1", "OTHER": "kept"}
    saved = conftest.children_write_bytecode(environ)
    assert saved == "1" and environ == {"OTHER": "kept"}
    conftest.put_back_dont_write_bytecode(environ, saved)
    assert environ == {"PYTHONDONTWRITEBYTECODE": "1", "OTHER": "kept"}


def test_an_unset_setting_stays_unset():
    environ = {"OTHER": "kept"}
    saved = conftest.children_write_bytecode(environ)
    conftest.put_back_dont_write_bytecode(environ, saved)
    assert saved is None and environ == {"OTHER": "kept"}


def test_a_child_started_by_a_test_writes_bytecode():
    assert "PYTHONDONTWRITEBYTECODE" not in os.environ
    child = subprocess.run([sys.executable, "-c", "import sys; print(sys.dont_write_bytecode)"],
                           capture_output=True, text=True, timeout=120, check=True)
    assert child.stdout.strip() == "False"
