"""Ctrl-C and SIGTERM outside a command's own handler: while the command line is parsed (its modules imported),
and after the handler ran while the model still loads in the background (the process must end at once)."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("stop, status", [(KeyboardInterrupt, 130), (cli.Terminated, 143)])
def test_a_stop_while_the_parser_is_built_ends_the_json_protocol_with_its_cancelled_line(monkeypatch, capsys, stop,
                                                                                          status):
    """`--progress json` promises one final line and exit 130 for a cancel: a SIGTERM in the first ~0.7 s (while the
    command modules were imported) gave no line on stdout and exit 143, so a program reading the protocol saw the
    stream end without an answer."""
    def stopped():
        raise stop()

    monkeypatch.setattr(cli, "build_parser", stopped)
    assert cli.main(["segment", "ct.nii.gz", "--progress", "json"]) == 130
    out = capsys.readouterr()
    assert out.out == '{"error": "cancelled"}\n' and out.err.strip() in ("interrupted",
                                                                          "error: terminated (SIGTERM) before any "
                                                                          "work started")
    assert cli.main(["segment", "ct.nii.gz", "--progress=json"]) == 130
    assert capsys.readouterr().out == '{"error": "cancelled"}\n'
    assert cli.main(["segment", "ct.nii.gz"]) == status  # without json: the signal's own status, nothing on stdout
    assert capsys.readouterr().out == ""


def test_sighup_is_handled_like_sigterm_unless_it_is_ignored(monkeypatch):
    """A closed terminal ended a run with no clean-up. Under nohup (SIGHUP ignored) it stays ignored."""
    import signal

    if not hasattr(signal, "SIGHUP"):
        return
    seen = []

    def parser_that_looks():
        seen.append(signal.getsignal(signal.SIGHUP))
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", parser_that_looks)
    previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        cli.main(["models"])
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup leaves it
        cli.main(["models"])
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN  # given back as it was
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert seen == [cli._raise_terminated, signal.SIG_IGN]
    hangup = cli.Terminated(signal.SIGHUP)
    assert (hangup.signal_name, hangup.exit_code) == ("SIGHUP", 129)


def test_console_exit_does_not_wait_for_a_background_model_load(tmp_path):
    """A Ctrl-C during the read used to take ~6 s to end the process: the interpreter joined the model-load
    thread (importing torch and MONAI) first. The stand-in load here never ends: a process that waited for it would
    run into the timeout, which is generous (a wall-clock bound of 30 s beside a 60-s load could fail on a slow,
    busy CI machine, where starting Python and importing the library takes many seconds)."""
    script = textwrap.dedent("""
        import threading
        from LiverTumorSegLib import cli
        threading.Thread(target=threading.Event().wait, name="model-load_0").start()
        cli.main = lambda argv=None: 130
        cli.console_main()
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, timeout=120,
                          capture_output=True, text=True)
    assert proc.returncode == 130, proc.stderr


def test_allocation_failures_are_a_one_line_error_not_an_internal_error(monkeypatch, capsys):
    """Running out of memory mid-run printed 'internal error: MemoryError ... please report it' (exit 1), or
    oneDNN's 'could not create a primitive'; both are the user's to fix (exit 2). Other errors stay internal."""
    from LiverTumorSegLib.commands import models as models_cmd

    for exc, code, words in ((MemoryError("Unable to allocate 150. MiB for an array"), 2, "error: Ran out of memory "
                              "(Unable to allocate 150. MiB"),
                             (RuntimeError("could not create a primitive"), 2, "error: Ran out of memory"),
                             (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 GB"),
                              2, "use a machine with more memory."),  # models has no --batch-size (see below)
                             (RuntimeError("shape mismatch"), 1, "internal error: RuntimeError: shape mismatch")):
        def fail(args, exc=exc):
            raise exc

        monkeypatch.setattr(models_cmd, "run", fail)
        assert cli.main(["models"]) == code
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, err


def test_out_of_memory_advice_fits_the_command(monkeypatch, capsys, tmp_path):
    """Out of memory, every command advised "--batch-size 1 lowers what the network needs", also evaluate and
    measure, which run no network and have no --batch-size. The advice names it only where the option exists."""
    import importlib

    for command, argv, network in (
            ("evaluate", ["--pred", "p", "--ref", "r", "-o", str(tmp_path / "out")], False),
            ("measure", ["labels.nii.gz", "-o", str(tmp_path / "m.json")], False),
            ("segment", ["ct.nii.gz", "-o", str(tmp_path / "s.nii.gz")], True),
            ("train", ["--data", "d", "-o", str(tmp_path / "m.safetensors")], True)):
        def fail(args):
            raise MemoryError("Unable to allocate 2.1 GiB for an array with shape (900, 512, 512)")

        monkeypatch.setattr(importlib.import_module(f"LiverTumorSegLib.commands.{command}"), "run", fail)
        assert cli.main([command] + argv) == 2, command
        err = capsys.readouterr().err
        assert err.startswith("error: Ran out of memory (Unable to allocate 2.1 GiB") and err.count("\n") == 1, err
        assert "Close other programs to free memory" in err, err
        if network:
            assert "--batch-size 1 lowers what the network needs" in err and "a GPU" in err, err
        else:
            assert "batch" not in err and "network" not in err and "GPU" not in err, err
            assert err.rstrip().endswith("or use a machine with more memory."), err


def _console_run(tmp_path, body: str, **env_extra):
    """Run ``cli.console_main`` in a fresh process after ``body`` (a stand-in command: ``cli.main``); returns the
    finished process. ``exit.txt`` records whether the teardown was skipped, ``atexit.txt`` that exit functions ran."""
    script = textwrap.dedent("""
        import atexit, sys, threading, time
        from LiverTumorSegLib import cli
        atexit.register(lambda: open("atexit.txt", "w").write("ran"))
        skip = cli._exit_without_teardown
        def recorded(code):
            open("exit.txt", "w").write(f"skipped teardown {code}")
            skip(code)
        cli._exit_without_teardown = recorded
    """) + textwrap.dedent(body) + "\ncli.console_main()\n"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop(cli.FULL_EXIT_VARIABLE, None)
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, timeout=60, capture_output=True,
                          text=True)


def test_a_finished_command_ends_without_the_interpreter_teardown_but_with_its_exit_functions(tmp_path):
    """Python's teardown after a 300-slice segment took 0.56-0.66 s of nothing; the process now ends without it,
    once only daemon threads are left: its exit code, printed lines and exit functions are kept."""
    proc = _console_run(tmp_path, """
        def command(argv=None):
            print("result line", flush=False)  # still buffered when the command returns
            return 2
        cli.main = command
    """)
    assert proc.returncode == 2 and proc.stdout == "result line\n", proc.stderr
    assert (tmp_path / "exit.txt").read_text() == "skipped teardown 2"
    assert (tmp_path / "atexit.txt").read_text() == "ran"


def test_a_command_run_under_cprofile_keeps_the_teardown_so_the_profile_is_written(tmp_path):
    """`python -m cProfile -o out.prof -m LiverTumorSegLib segment ...` wrote no profile on Python 3.12: cProfile
    attaches through sys.monitoring there (sys.getprofile() is None), so the teardown was skipped before cProfile
    wrote its file after the entry point returned."""
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent("""
        from LiverTumorSegLib import cli
        cli.main = lambda argv=None: 0
        cli.console_main()
    """))
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop(cli.FULL_EXIT_VARIABLE, None)
    proc = subprocess.run([sys.executable, "-m", "cProfile", "-o", "out.prof", str(script)], env=env, cwd=tmp_path,
                          timeout=60, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.prof").stat().st_size > 0


@pytest.mark.skipif(not hasattr(sys, "monitoring"), reason="sys.monitoring is Python 3.12+")
def test_a_sys_monitoring_tool_keeps_the_teardown(tmp_path):
    proc = _console_run(tmp_path, """
        sys.monitoring.use_tool_id(sys.monitoring.COVERAGE_ID, "a coverage tool")
        cli.main = lambda argv=None: 0
    """)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "exit.txt").exists() and (tmp_path / "atexit.txt").read_text() == "ran"


def test_a_live_thread_or_the_full_exit_variable_keeps_the_whole_teardown(tmp_path):
    """A non-daemon thread still working (it might be writing a file) is waited for as Python does; so is every
    process when LIVERTUMORSEG_FULL_EXIT is set (a profiler writes its results after the entry point returns)."""
    proc = _console_run(tmp_path, """
        def late_write():
            time.sleep(1.0)
            open("late.txt", "w").write("written")
        def command(argv=None):
            threading.Thread(target=late_write).start()
            return 0
        cli.main = command
    """)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "late.txt").read_text() == "written" and not (tmp_path / "exit.txt").exists()
    (tmp_path / "atexit.txt").unlink()
    proc = _console_run(tmp_path, "cli.main = lambda argv=None: 0\n", **{cli.FULL_EXIT_VARIABLE: "1"})
    assert proc.returncode == 0 and not (tmp_path / "exit.txt").exists()
    assert (tmp_path / "atexit.txt").read_text() == "ran"


def _console_script(tmp_path, body: str) -> Path:
    """A script running ``cli.console_main`` after ``body``, as :func:`_console_run` does, for runs it cannot make
    (another stdout, a debugger, ``python -i``)."""
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent("""
        import sys
        from LiverTumorSegLib import cli
    """) + textwrap.dedent(body) + "\ncli.console_main()\n")
    return script


def _env():
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop(cli.FULL_EXIT_VARIABLE, None)
    env.pop("PYTHONINSPECT", None)
    env.pop("PYTHONUNBUFFERED", None)  # buffered, as a terminal's or a file's stdout is by default
    return env


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_an_output_that_cannot_be_written_is_not_an_exit_status_of_0(tmp_path):
    """`livertumorseg measure ... > /dev/full` (a full disk) exited 0 with its output lost: the fast exit ignored every
    error of its final flush. Python's own exit returns 120 then, and says why; so does this one."""
    script = _console_script(tmp_path, """
        def command(argv=None):
            print("result line")
            return 0
        cli.main = command
    """)
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, str(script)], env=_env(), cwd=tmp_path, timeout=60, stdout=full,
                              stderr=subprocess.PIPE, text=True)
    assert proc.returncode == 120 and "could not be written to stdout" in proc.stderr, proc.stderr


@pytest.mark.skipif(os.name != "posix", reason="closes file descriptor 1 before the child starts")
def test_a_closed_stdout_or_stderr_is_no_internal_error(tmp_path):
    """`livertumorseg models >&-` ended with "AttributeError: 'NoneType' object has no attribute 'flush'" and exit 1
    (Python sets sys.stdout to None when fd 1 is closed at start)."""
    script = _console_script(tmp_path, """
        def command(argv=None):
            if sys.stdout is not None:
                print("result line")
            return 0
        cli.main = command
    """)
    for fd in (1, 2):
        proc = subprocess.run([sys.executable, str(script)], env=_env(), cwd=tmp_path, timeout=60,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, close_fds=True,
                              preexec_fn=lambda fd=fd: os.close(fd))
        assert proc.returncode == 0, (fd, proc.stderr)


def test_python_i_and_pdb_get_control_back_after_the_command(tmp_path):
    """Under `python -i` the prompt never came, and under `python -m pdb` (no breakpoints: pdb removes its tracer)
    pdb never regained control: the fast exit ended the process first."""
    script = _console_script(tmp_path, "cli.main = lambda argv=None: 0\n")
    proc = subprocess.run([sys.executable, "-i", str(script)], env=_env(), cwd=tmp_path, timeout=60,
                          input='print("REPL " + "reached")\n', capture_output=True, text=True)
    assert "REPL reached" in proc.stdout + proc.stderr, (proc.stdout, proc.stderr)
    proc = subprocess.run([sys.executable, "-m", "pdb", str(script)], env=_env(), cwd=tmp_path, timeout=60,
                          input="c\nq\n", capture_output=True, text=True)
    assert "The program" in proc.stdout, proc.stdout[-2000:]  # "... finished and will be restarted" / "exited via"


_INTERRUPT_AT_IMPORT = textwrap.dedent("""
    import atexit, signal, sys
    class InterruptAt:  # Ctrl-C at a known moment of the start: when the module TRIGGER is first looked for
        def find_spec(self, name, path=None, target=None):
            if name == TRIGGER:
                sys.meta_path.remove(self)
                open("fired.txt", "w").write(name)
                signal.raise_signal(signal.SIGNAL_NAME)
            return None
    sys.meta_path.insert(0, InterruptAt())
    atexit.register(lambda: open("atexit.txt", "w").write("ran"))  # not after the start's immediate exit
""")


def _run_interrupted_at(tmp_path, trigger: str, how: str, *args: str, signal_name: str = "SIGINT"):
    """Run ``livertumorseg ARGS`` (``how``: "script", a copy of the console script pip writes, named
    ``livertumorseg``; "module": ``python -m LiverTumorSegLib``) with SIGINT raised when module ``trigger`` is first
    looked for: deterministic, where a signal sent after a delay lands wherever the machine's speed puts it."""
    setup = _INTERRUPT_AT_IMPORT.replace("TRIGGER", repr(trigger)).replace("SIGNAL_NAME", signal_name)
    if how == "script":
        script = tmp_path / "livertumorseg"
        script.write_text(setup + textwrap.dedent("""
            import re
            from LiverTumorSegLib.cli import console_main
            if __name__ == '__main__':
                sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
                sys.exit(console_main())
        """))
        command = [sys.executable, str(script)] + list(args)
    else:
        command = [sys.executable, "-c", setup + "import runpy\nsys.argv[1:] = " + repr(list(args))
                   + "\nrunpy.run_module('LiverTumorSegLib', run_name='__main__', alter_sys=True)\n"]
    proc = subprocess.run(command, env=_env(), cwd=tmp_path, timeout=60, capture_output=True, text=True)
    assert (tmp_path / "fired.txt").read_text() == trigger, (proc.returncode, proc.stderr)  # the Ctrl-C came
    return proc


@pytest.mark.skipif(not hasattr(__import__("signal"), "raise_signal"), reason="signal.raise_signal: Python 3.8+")
@pytest.mark.parametrize("how", ["script", "module"])
@pytest.mark.parametrize("trigger", ["argparse", "LiverTumorSegLib.errors"])
def test_ctrl_c_while_the_program_imports_its_modules_is_a_clean_130(tmp_path, how, trigger):
    """Ctrl-C in the first ~20-40 ms of `livertumorseg ...` (while the console script's import line ran) printed a
    KeyboardInterrupt traceback and ended with status -2 (measured: 12 of 102 runs with SIGINT sent 0-100 ms after
    the start; the rest ended in Python's own start-up, silently, or with the clean exit). Now the handler installed
    by cli's first statements ends it as a later Ctrl-C does: 'interrupted', exit 130, no traceback."""
    proc = _run_interrupted_at(tmp_path, trigger, how, "models")
    assert (proc.returncode, proc.stderr, proc.stdout) == (130, "interrupted\n", "")


@pytest.mark.skipif(not hasattr(__import__("signal"), "raise_signal"), reason="signal.raise_signal: Python 3.8+")
def test_ctrl_c_while_the_program_starts_under_progress_json_gives_the_cancelled_line(tmp_path):
    """The start's immediate exit wrote only 'interrupted' on stderr: under `--progress json` the protocol's final
    line is on stdout too."""
    proc = _run_interrupted_at(tmp_path, "argparse", "script", "segment", "ct.nii.gz", "--progress", "json")
    assert (proc.returncode, proc.stderr, proc.stdout) == (130, "interrupted\n", '{"error": "cancelled"}\n')


@pytest.mark.skipif(not hasattr(__import__("signal"), "raise_signal"), reason="signal.raise_signal: Python 3.8+")
@pytest.mark.parametrize("json_progress", [False, True])
def test_sigterm_while_the_program_starts_is_a_worded_stop(tmp_path, json_progress):
    """A SIGTERM while the program imported its modules ended it by Python's default, silently (status -15) and under
    `--progress json` without the protocol's final line; now as a SIGTERM a moment later: 143 with the one line,
    or the cancelled line and 130."""
    args = ["segment", "ct.nii.gz"] + (["--progress", "json"] if json_progress else [])
    proc = _run_interrupted_at(tmp_path, "argparse", "script", *args, signal_name="SIGTERM")
    assert proc.stderr == "error: terminated (SIGTERM) before any work started\n"
    assert (proc.returncode, proc.stdout) == ((130, '{"error": "cancelled"}\n') if json_progress else (143, ""))


def test_sigterm_is_given_back_as_python_left_it_after_the_command(tmp_path):
    """The start's SIGTERM handler says 'before any work started': after the command, SIGTERM is Python's default
    again, not that handler. The command: a segment that refuses its missing input (exit 2, 0.5 s; `models --json`
    imported torch and MONAI for 6-10 s): main() runs the command, which returns as any other does."""
    script = tmp_path / "livertumorseg"
    script.write_text("import signal, sys\nfrom LiverTumorSegLib import cli\n"
                      "started = signal.getsignal(signal.SIGTERM) is cli._terminated_while_starting\n"
                      "code = cli.main(['segment', 'missing.nii.gz', '-o', 'seg.nii.gz'])\n"
                      "print(code, started, signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, str(script)], env=_env(), cwd=tmp_path, timeout=120, capture_output=True,
                          text=True)
    assert proc.stderr.strip().splitlines()[-1] == "2 True True", proc.stderr
    assert "missing.nii.gz' does not exist" in proc.stderr  # the command itself ran (and refused the input)


@pytest.mark.skipif(not hasattr(__import__("signal"), "raise_signal"), reason="signal.raise_signal: Python 3.8+")
def test_ctrl_c_once_the_command_runs_is_still_the_commands_own_keyboardinterrupt(tmp_path):
    """From main() on SIGINT is Python's KeyboardInterrupt again, which the command's clean-up and main() handle (the
    start's immediate exit would skip them): a Ctrl-C while the commands' modules load ends through main(), whose
    exit runs the exit functions."""
    proc = _run_interrupted_at(tmp_path, "LiverTumorSegLib.commands.models", "script", "models")
    assert (proc.returncode, proc.stderr) == (130, "interrupted\n")
    assert (tmp_path / "atexit.txt").read_text() == "ran"


def test_the_start_handler_is_only_the_programs(tmp_path):
    """A program that imports the library (tests, Slicer, the benchmark scripts) keeps Python's SIGINT handling, and
    the program started with SIGINT ignored (`cmd &` in a script) keeps it ignored."""
    check = ("import signal, sys\n"
             "from LiverTumorSegLib import cli\n"
             "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)\n")
    proc = subprocess.run([sys.executable, "-c", check], env=_env(), cwd=tmp_path, timeout=60, capture_output=True,
                          text=True)
    assert proc.stdout == "True\n", proc.stderr
    script = tmp_path / "livertumorseg"
    script.write_text("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                      "from LiverTumorSegLib import cli\nprint(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)\n")
    proc = subprocess.run([sys.executable, str(script)], env=_env(), cwd=tmp_path, timeout=60, capture_output=True,
                          text=True)
    assert proc.stdout == "True\n", proc.stderr


def test_a_spawned_child_of_the_program_keeps_pythons_signal_handling(tmp_path):
    """multiprocessing's spawn (DataLoader workers on macOS and Windows) runs the program's script in the child with
    the program's argv, so cli's start handlers were installed there and never given back (the child runs no main()):
    a SIGTERM ended such a worker with 'terminated (SIGTERM) before any work started' and exit 143, not -15, which
    torch reports as a worker that exited unexpectedly rather than one a stop signal ended."""
    script = tmp_path / "livertumorseg"
    script.write_text(textwrap.dedent("""
        import multiprocessing, signal, sys
        from LiverTumorSegLib import cli

        def handlers(queue):
            queue.put((signal.getsignal(signal.SIGINT) is signal.default_int_handler,
                       signal.getsignal(signal.SIGTERM) == signal.SIG_DFL))

        if __name__ == '__main__':
            context = multiprocessing.get_context('spawn')
            queue = context.Queue()
            child = context.Process(target=handlers, args=(queue,))
            child.start()
            print(signal.getsignal(signal.SIGTERM) is cli._terminated_while_starting, queue.get(timeout=60))
            child.join()
    """))
    proc = subprocess.run([sys.executable, str(script)], env=_env(), cwd=tmp_path, timeout=120, capture_output=True,
                          text=True)
    assert proc.stdout == "True (True, True)\n", proc.stderr


@pytest.mark.skipif(not hasattr(__import__("signal"), "raise_signal"), reason="signal.raise_signal: Python 3.8+")
@pytest.mark.parametrize("signal_name, code, message", [("SIGINT", 130, "interrupted\n"),
                                                        ("SIGTERM", 143, "error: terminated (SIGTERM); unfinished "
                                                                         "output files were removed\n")])
def test_a_benchmark_script_stopped_by_a_signal_says_so_in_one_line(tmp_path, signal_name, code, message):
    """The benchmark scripts' entry (run_script): Ctrl-C in `benchmarks/robustness.py` printed a KeyboardInterrupt
    traceback through torch's frames, and SIGTERM ended it by Python's default without a word (status -15), its
    --json temporary left behind. Now as the CLI: one line, 130 or 143, and the output's temporary removed."""
    script = tmp_path / "bench.py"
    script.write_text(textwrap.dedent(f"""\
        import signal, sys
        from LiverTumorSegLib.cli import run_script
        from LiverTumorSegLib.fileutil import atomic_output

        def work():
            with atomic_output('out.json') as tmp:
                tmp.write_text('{{"rows": [')
                signal.raise_signal(signal.{signal_name})
                tmp.write_text('{{"rows": []}}')

        sys.exit(run_script(work))
        """))
    proc = subprocess.run([sys.executable, str(script)], env=_env(), cwd=tmp_path, timeout=60, capture_output=True,
                          text=True)
    assert (proc.returncode, proc.stderr, proc.stdout) == (code, message, "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.py"]
