"""Ctrl-C and SIGTERM outside a command's own handler: while the command line is parsed (its modules imported),
and after the handler ran while the model still loads in the background (the process must end at once)."""
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from LiverTumorSegLib import cli

REPO = Path(__file__).resolve().parents[2]


def test_interrupt_while_the_parser_is_built_is_a_clean_exit(monkeypatch, capsys):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["models"]) == 130
    assert capsys.readouterr().err == "interrupted\n"

    def terminated():
        raise cli.Terminated

    monkeypatch.setattr(cli, "build_parser", terminated)
    assert cli.main(["models"]) == 143
    assert "terminated (SIGTERM)" in capsys.readouterr().err


def test_console_exit_does_not_wait_for_a_background_model_load(tmp_path):
    """A Ctrl-C during the read used to take ~6 s to end the process: the interpreter joined the model-load
    thread (importing torch and MONAI) first. The stand-in load here takes 60 s."""
    script = textwrap.dedent("""
        import threading, time
        from LiverTumorSegLib import cli
        threading.Thread(target=time.sleep, args=(60,), name="model-load_0").start()
        cli.main = lambda argv=None: 130
        cli.console_main()
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, timeout=50,
                          capture_output=True, text=True)
    assert proc.returncode == 130, proc.stderr
    assert time.monotonic() - start < 30


def test_allocation_failures_are_a_one_line_error_not_an_internal_error(monkeypatch, capsys):
    """Running out of memory mid-run printed 'internal error: MemoryError ... please report it' (exit 1), or
    oneDNN's 'could not create a primitive'; both are the user's to fix (exit 2). Other errors stay internal."""
    from LiverTumorSegLib.commands import models as models_cmd

    for exc, code, words in ((MemoryError("Unable to allocate 150. MiB for an array"), 2, "error: Ran out of memory "
                              "(Unable to allocate 150. MiB"),
                             (RuntimeError("could not create a primitive"), 2, "error: Ran out of memory"),
                             (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 GB"),
                              2, "--batch-size 1"),
                             (RuntimeError("shape mismatch"), 1, "internal error: RuntimeError: shape mismatch")):
        def fail(args, exc=exc):
            raise exc

        monkeypatch.setattr(models_cmd, "run", fail)
        assert cli.main(["models"]) == code
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, err
