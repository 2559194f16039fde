"""The ``livertumorseg`` command line. Each subcommand lives in ``LiverTumorSegLib/commands/<name>.py``
with two functions:

* ``register(subparsers) -> argparse.ArgumentParser``: adds its parser (help text, options);
* ``run(args) -> int``: does the work and returns the exit code.

Errors the user can fix (:class:`~LiverTumorSegLib.errors.LiverTumorSegError`) print one line
``error: ...`` and exit 2; Ctrl-C exits 130, SIGTERM 143 and SIGHUP 129 (unless ignored, as under ``nohup``),
Ctrl-Break on Windows (SIGBREAK) 149, all after removing unfinished outputs (the
signal becomes an exception, so every ``atomic_output`` cleans up its temporary file); anything else is a bug: one line plus a hint to rerun with
``--debug`` for the traceback, exit 1.

Ctrl-C while the program starts (its modules are imported) exits 130 too, with ``interrupted`` and no traceback, and
SIGTERM then 143 with one line (Python's default ended it silently): :func:`_quiet_start` installs the handlers for
that before this module imports anything else. Under ``--progress json`` a stop before the command's own handler
runs ends with the protocol's final line ``{"error": "cancelled"}`` and 130, as a later one does.
"""
import os
import sys

try:  # the C module under `signal`: importing signal.py (it builds enums) took a millisecond of the window below
    import _signal
except ImportError:  # pragma: no cover - an implementation without it
    import signal as _signal


def _interrupted_while_starting(signum, frame) -> None:
    """SIGINT's handler while the ``livertumorseg`` program starts (:func:`_quiet_start`): nothing is written yet,
    so the process ends at once, as a Ctrl-C later ends it: ``interrupted`` on stderr and exit 130, and under
    ``--progress json`` the protocol's final line ``{"error": "cancelled"}`` on stdout."""
    argv = list(sys.argv[1:])
    for fd, text in ((1, b'{"error": "cancelled"}\n' if _json_progress_in(argv) else b""), (2, b"interrupted\n")):
        try:
            if text:
                os.write(fd, text)
        except OSError:  # the stream closed (`2>&-`)
            pass
    os._exit(130)


def _terminated_while_starting(signum, frame) -> None:
    """SIGTERM's handler while the ``livertumorseg`` program starts (:func:`_quiet_start`): the process ends at once
    as a SIGTERM a moment later ends it before any work (exit 143, or under ``--progress json`` the final line
    ``{"error": "cancelled"}`` and 130), where Python's default ended it silently with no protocol line."""
    argv = list(sys.argv[1:])
    json_progress = _json_progress_in(argv)
    for fd, text in ((1, b'{"error": "cancelled"}\n' if json_progress else b""),
                     (2, b"error: terminated (SIGTERM) before any work started\n")):
        try:
            if text:
                os.write(fd, text)
        except OSError:  # the stream closed (`2>&-`)
            pass
    os._exit(130 if json_progress else 143)


def _json_progress_in(argv) -> bool:
    """``--progress json`` among the raw arguments ``argv`` (so even a usage error or a cancel while the program
    starts answers in JSON)."""
    return "--progress=json" in argv or any(a == "--progress" and b == "json" for a, b in zip(argv, argv[1:]))


def _started_as_the_program() -> bool:
    """Whether this process is the ``livertumorseg`` program (its console script, ``livertumorseg.exe`` or
    ``livertumorseg-script.py`` on Windows, or ``python -m LiverTumorSegLib``), not a program that imports the
    library (a test run, Slicer, a benchmark script), whose own SIGINT handling must stay as it is, nor a child
    that ``multiprocessing`` started from it (:func:`_a_multiprocessing_child`)."""
    if _a_multiprocessing_child():
        return False
    main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if getattr(main_spec, "name", None) == "LiverTumorSegLib.__main__":
        return True
    argv = getattr(sys, "argv", None) or [""]
    name = os.path.basename(str(argv[0])).lower()
    for suffix in ("-script.pyw", "-script.py", ".exe"):
        if name.endswith(suffix):
            name = name[:-len(suffix)]
    return name == "livertumorseg"


def _a_multiprocessing_child() -> bool:
    """Whether this process is a child that ``multiprocessing`` started by spawn or forkserver (DataLoader workers on
    macOS and Windows), which imports this module while it takes over the program's ``sys.argv`` and main module but
    never runs :func:`main`: the start's handlers stayed there for good, and a SIGTERM (a Slurm job's end) ended such
    a worker with 'terminated (SIGTERM) before any work started' and exit 143, which torch reports as a worker that
    'exited unexpectedly', not one a stop signal ended (training.interrupts), where Python's default gave -15."""
    process = sys.modules.get("multiprocessing.process")
    if process is None:  # no multiprocessing child imports this module before multiprocessing
        return False
    return bool(getattr(process.current_process(), "_inheriting", False)) or process.parent_process() is not None


def _quiet_start() -> None:
    """Ctrl-C while the program imports this module (15-40 ms of every start on a 2-core machine, more on a cold
    disk) ended in a ``KeyboardInterrupt`` traceback from the console script's import line (exit status -2), where
    a Ctrl-C a moment later gives ``interrupted`` and 130: from here until :func:`main` takes over, SIGINT ends the
    process that way at once (:func:`_interrupted_while_starting`). Only in the ``livertumorseg`` program itself,
    and only while SIGINT has Python's default handler (one started with SIGINT ignored keeps it ignored). What
    comes before this module's first lines (Python's own start-up, ``site``, ``runpy``, finding this package: well
    under a millisecond of it ours) is out of its reach. SIGTERM likewise (:func:`_terminated_while_starting`), where
    Python's default ended the process without a word (and without the ``--progress json`` protocol's final line)."""
    try:
        if not _started_as_the_program():
            return
        if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
            _signal.signal(_signal.SIGINT, _interrupted_while_starting)
        if _signal.getsignal(_signal.SIGTERM) == _signal.SIG_DFL:
            _signal.signal(_signal.SIGTERM, _terminated_while_starting)
    except (ValueError, OSError):  # not the main thread, or no signals here: Python's default stays
        pass


def _end_quiet_start() -> None:
    """SIGINT back to Python's ``KeyboardInterrupt`` once :func:`main` catches it: the command's own handling
    (removing unfinished outputs, training's interrupt checkpoint) takes over."""
    if _signal.getsignal(_signal.SIGINT) is _interrupted_while_starting:
        _signal.signal(_signal.SIGINT, _signal.default_int_handler)


_quiet_start()
# every other import comes after _quiet_start on purpose: a Ctrl-C while they run is no traceback
import argparse  # noqa: E402
import contextlib  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402
from typing import Any, Callable, Iterable, Iterator, List, Optional

from . import __version__
from .errors import LiverTumorSegError, cli_wording, out_of_memory_error

# name -> module under LiverTumorSegLib.commands; imported lazily so `--help` stays fast.
COMMANDS = ["segment", "preprocess", "models", "train", "crossval", "evaluate", "measure", "followup"]


def _load_command(name: str):
    return importlib.import_module(f"LiverTumorSegLib.commands.{name}")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that fits the terminal (80 columns when not a terminal) without broken words: argparse's own wrapping
    split option names at their hyphens (``--uncertain-`` / ``lesion-max-ml`` at 60 columns, ``--split-seed``'s
    ``hold-`` / ``out`` at 70), and the commands' descriptions (their module docstrings, written 110-120 columns
    wide) were printed as written. A description's paragraphs (blank-line separated) are wrapped to the width;
    lines indented 4 spaces (a command-line example) keep their own lines, a longer one continuing indented 8;
    reST's double backticks become single ones; a number and its '%' stay on one line."""

    def _split_lines(self, text: str, width: int) -> List[str]:
        import textwrap

        text = self._whitespace_matcher.sub(" ", text).strip().replace(" %", "\xa0%")  # '30 %' stays on one line
        return [line.replace("\xa0", " ")
                for line in textwrap.wrap(text, width, break_on_hyphens=False, break_long_words=False)]

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import re
        import textwrap

        wrap = dict(break_on_hyphens=False, break_long_words=False)
        paragraphs = []
        for paragraph in re.split(r"\n[ \t]*\n", text.replace("``", "`").strip("\n")):
            lines = [line for line in paragraph.splitlines() if line.strip()]
            if lines and all(line.startswith("    ") for line in lines):  # command-line examples
                paragraphs.append("\n".join("\n".join(textwrap.wrap(
                    line.strip(), width, initial_indent=indent + "    ", subsequent_indent=indent + "        ",
                    **wrap)) for line in lines))
            else:
                words = " ".join(paragraph.split()).replace(" %", "\xa0%")
                paragraphs.append("\n".join(textwrap.wrap(words, width, initial_indent=indent,
                                                          subsequent_indent=indent, **wrap)))
        return "\n\n".join(paragraphs).replace("\xa0", " ")


FILE_NAME_ENDINGS = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm", ".csv", ".json", ".yaml", ".yml",
                     ".safetensors", ".png", ".txt", ".pt")
"""Ends of the file names the commands read or write: a command-line word starting with '-' and ending so is a file
name, not an option (:meth:`_CommandAwareParser._refuse_file_names_read_as_options`)."""


_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")
"""argparse's negative number, which it takes as an option's value (``--window-level -100``), a file of that name
or not."""


class _WholeOptionParser(argparse.ArgumentParser):
    """A parser that takes options only as spelt in full: argparse's default took any unambiguous prefix
    (``--no-post`` ran as ``--no-postprocess``, ``--overwrit`` as ``--overwrite``), so a shortened option in a
    script could silently change meaning when a later version adds an option with the same prefix. A prefix now
    gets the unknown-option answer, naming the options it starts (:class:`_CommandAwareParser`). Its help is
    wrapped by :class:`HelpFormatter`.

    ``refused_together`` (set by a command's ``register``): ``(option, option, why)`` triples; a command line that
    types both options of one is refused with a usage error naming both and saying why (one of them would do
    nothing: ``followup --picture p.png --no-picture`` wrote no picture without a word).

    ``needs_another`` (set by a command's ``register``, optional): ``(option, needed option, why)`` triples; a
    command line that types the first without the second is refused the same way (the first would do nothing:
    ``evaluate --prob-structure liver`` without ``--prob`` ran, exit 0, with no ROC of anything).

    ``misplaced_options`` (set by a command's ``register``, optional): option -> ``hint(option, value)``, the text
    added to the unknown-option error for another command's option given to this one (``segment --config``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.refused_together = []  # type: List[tuple]
        self.needs_another = []  # type: List[tuple]


class _CommandAwareParser(_WholeOptionParser):
    """The top-level parser: an option the chosen command does not know is reported with that *command's*
    usage and the closest option it has (``--no-progess -> did you mean --no-progress?``), not with the
    top-level usage; exits 2 like any argparse error."""

    def parse_args(self, args=None, namespace=None):  # noqa: D102 - argparse's signature
        self._refuse_file_names_read_as_options(list(sys.argv[1:] if args is None else args))
        parsed, extras = self.parse_known_args(args, namespace)
        if getattr(parsed, "_unavailable", None):  # its options are unknown: say why the command cannot run
            return parsed  # ('segment ct.nii.gz -o out.nii.gz' was 'unrecognized arguments: ct.nii.gz -o ...')
        if extras:
            self._unknown_options(parsed, extras, list(sys.argv[1:] if args is None else args))
        command = (getattr(parsed, "_command_parsers", None) or {}).get(getattr(parsed, "command", None))
        if command is not None:
            repeated = repeated_options(command, list(sys.argv[1:] if args is None else args))
            if repeated:  # argparse keeps the last one: `--report a.json --report b.csv` wrote only b.csv
                command.error(f"{' and '.join(repeated)} given more than once (only the last one would count); "
                              f"give each option once")
            typed = typed_options(command, list(sys.argv[1:] if args is None else args))
            for first, second, why in getattr(command, "refused_together", ()):
                if first in typed and second in typed:
                    command.error(f"{first} and {second} cannot be given together: {why}")
            for option, needed, why in getattr(command, "needs_another", ()):
                if option in typed and needed not in typed:
                    command.error(f"{option} needs {needed}: {why}")
        return parsed

    def error(self, message: str):  # noqa: D102 - argparse's signature
        import difflib
        import re

        wrong = re.match(r"argument COMMAND: invalid choice: '(.*?)'", message)
        close = difflib.get_close_matches(wrong.group(1), COMMANDS, n=1, cutoff=0.6) if wrong else []
        if close:  # 'segmnt' was answered with the list of commands only
            message = f"{message}; did you mean '{close[0]}'?"
        super().error(message)

    def _refuse_file_names_read_as_options(self, tokens: List[str]) -> None:
        """A usage error for a file name starting with '-' (``-ct.nii.gz``: an existing file, or a name ending in a
        file type this tool reads or writes) that argparse would take for an option: ``segment -ct.nii.gz`` was
        "unrecognized arguments: -ct.nii.gz" and ``-o -seg.nii.gz`` "argument -o/--output: expected one
        argument", though the user gave one. Tokens after ``--`` and options of the command are left alone."""
        commands = next((action.choices for action in self._actions
                         if isinstance(action, argparse._SubParsersAction)), {})
        command = next((commands[token] for token in tokens if token in commands), None)
        takes_value = {option: action.nargs != 0 for parser in (self, command) if parser is not None
                       for action in parser._actions for option in action.option_strings}
        for before, token in zip([""] + tokens, tokens):
            if token == "--":
                return
            if (not token.startswith("-") or token == "-" or token.split("=", 1)[0] in takes_value
                    or (token[:2] in takes_value and not takes_value.get(before))):  # '-o-seg.nii.gz': -o's value
                continue
            if token.lower().endswith(FILE_NAME_ENDINGS) or (os.path.lexists(token)
                                                             and not _NEGATIVE_NUMBER.match(token)):
                (command or self).error(f"'{token}' starts with '-', so it is read as an option; write a file name "
                                        f"that starts with '-' with its folder, as './{token}'")

    def _unknown_options(self, parsed: argparse.Namespace, extras: List[str], tokens: List[str]) -> None:
        """Exit with a usage error naming ``extras`` (what argparse could not place) and a hint for each, where one
        helps. ``tokens`` is the whole command line: the value typed after another command's option is read
        there, since argparse may have taken it as this command's positional (``segment --config pkg.safetensors
        ct.nii.gz`` made the package the input, leaving ``--config ct.nii.gz`` over)."""
        import difflib

        command = (getattr(parsed, "_command_parsers", None) or {}).get(getattr(parsed, "command", None)) or self
        known = [o for action in command._actions for o in action.option_strings if o.startswith("--")]
        top_level = [o for action in self._actions for o in action.option_strings if o.startswith("--")]
        hints = []
        misplaced = getattr(command, "misplaced_options", None) or {}
        for extra in extras:
            given = extra.split("=", 1)[0]
            if given in misplaced and given not in known:  # another command's option (segment --config)
                hints.append(misplaced[given](given, _value_typed_after(extra, tokens)))
                continue
            if command is not self and given in top_level and given not in known:
                # '--debug' typed after the command was answered without a hint, '--version' with '--overwrite?'
                hints.append(f"{given} goes before the command: livertumorseg {given} {parsed.command} ...")
                continue
            started = [o for o in known if o.startswith(given)] if given.startswith("--") and len(given) > 2 else []
            if started:  # a shortened option: options are taken spelt in full only
                hints.append(f"{extra} -> options are spelt in full: {' or '.join(started)}?")
                continue
            owners = [name for name, other in (getattr(parsed, "_command_parsers", None) or {}).items()
                      if other is not command and given in {o for a in other._actions for o in a.option_strings}]
            if owners and command is not self:
                # another command's option: a close match of this command's was offered instead ('segment
                # --min-new-lesion-mm 5 -> did you mean --min-lesion-ml?', which would drop lesions under 5 mL;
                # the command-line audit)
                hints.append(f"{given} is an option of {' and '.join(sorted(owners))}, not of {parsed.command}")
                continue
            close = difflib.get_close_matches(given, known, n=1, cutoff=0.6)
            if close:
                hints.append(f"{extra} -> did you mean {close[0]}?")
        command.error("unrecognized arguments: " + " ".join(extras) + ("; " + "; ".join(hints) if hints else ""))


def _value_typed_after(option_token: str, tokens: List[str]) -> str:
    """The value typed with ``option_token`` on the command line ``tokens``: after its ``=`` or, for ``--option
    value``, the next token unless that is an option; '' if none (or the option is not among the tokens)."""
    if "=" in option_token:
        return option_token.split("=", 1)[1]
    if option_token not in tokens:
        return ""
    index = tokens.index(option_token)
    following = tokens[index + 1] if index + 1 < len(tokens) else ""
    return "" if following.startswith("-") else following


def repeated_options(parser: argparse.ArgumentParser, tokens: List[str]) -> List[str]:
    """The options of ``parser`` that ``tokens`` (a command line) sets more than once, each as ``'--a'`` or, for
    two spellings of one setting, ``'--a / --b'``: argparse keeps the last value without a word. Tokens after
    ``--`` are positional; ``--opt=value`` and ``-oVALUE`` count as the option."""
    by_string = {o: action for action in parser._actions for o in action.option_strings
                 if not isinstance(action, (argparse._HelpAction, argparse._VersionAction,
                                            argparse._AppendAction, argparse._CountAction))}
    seen = {}  # type: dict
    for token in tokens:
        if token == "--":
            break
        if not token.startswith("-") or token == "-":
            continue
        name = token.split("=", 1)[0] if token.startswith("--") else token[:2]
        action = by_string.get(name)
        if action is not None:
            seen.setdefault(action.dest, []).append(name)
    return [" / ".join(dict.fromkeys(names)) for names in seen.values() if len(names) > 1]


def typed_options(parser: argparse.ArgumentParser, tokens: List[str]) -> set:
    """The options of ``parser`` that ``tokens`` (a command line) types, each under every spelling of its setting
    (``--no-progress`` typed: ``--no-progress`` and ``--no-progress-bar``); tokens after ``--`` are positional."""
    by_string = {o: action for action in parser._actions for o in action.option_strings}
    typed = set()
    for token in tokens:
        if token == "--":
            break
        if not token.startswith("-") or token == "-":
            continue
        action = by_string.get(token.split("=", 1)[0] if token.startswith("--") else token[:2])
        if action is not None:
            typed.update(action.option_strings)
    return typed


def build_parser() -> argparse.ArgumentParser:
    parser = _CommandAwareParser(
        prog="livertumorseg",
        description="Liver and liver-tumor segmentation of abdominal CT (not a medical device).")
    parser.add_argument("--version", action="version", version=f"livertumorseg {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_WholeOptionParser)
    command_parsers = {}
    for name in COMMANDS:
        try:
            module = _load_command(name)
        except ImportError as exc:  # a command whose module is missing is listed but unusable
            p = sub.add_parser(name, help=f"(unavailable: {exc})")
            p.set_defaults(_unavailable=str(exc))
            continue
        p = module.register(sub)
        p.set_defaults(_run=module.run)
        command_parsers[name] = p
    parser.set_defaults(_command_parsers=command_parsers)  # for _CommandAwareParser's messages
    return parser


def _wants_json_progress(argv: List[str]) -> bool:
    """``--progress json`` among the raw arguments (so even a usage error answers in JSON)."""
    return _json_progress_in(argv)


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP: the terminal closed, an ssh connection dropped; or SIGBREAK: Ctrl-Break on Windows),
    raised like Ctrl-C's KeyboardInterrupt so that ``finally`` blocks remove temporaries and training saves its
    interrupt checkpoint. ``signal_name``: which; ``exit_code``: 128 + its number, as a shell reports a process the
    signal ended (143, 129; 149 for SIGBREAK)."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__()
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + int(signum)


def _raise_terminated(signum, frame) -> None:
    raise Terminated(signum)


def _stop_signals() -> List[int]:
    """The signals :func:`main` handles like SIGTERM: SIGTERM, and SIGHUP (POSIX) and SIGBREAK (Windows) where they
    exist and are not ignored (under ``nohup`` SIGHUP is, and stays so). A closed terminal ended a run with no
    clean-up, and ``train`` saved no interrupt checkpoint; so did Ctrl-Break on Windows, and
    ``os.kill(pid, signal.CTRL_BREAK_EVENT)``, the one way a Windows program can ask another to stop (SIGTERM cannot
    be sent there: ``os.kill`` with it terminates the process at once)."""
    signals = [signal.SIGTERM]
    for name in ("SIGHUP", "SIGBREAK"):
        number = getattr(signal, name, None)
        if number is not None and signal.getsignal(number) == signal.SIG_DFL:
            signals.append(number)
    return signals


def file_system_error_text(exc: BaseException) -> Optional[str]:
    """The user's words for an OSError the user can fix (no permission, read-only disk, disk full, a file larger than
    allowed, a file where a folder belongs, a name too long), wherever it was raised; None for anything else (a bug
    to report)."""
    import errno

    if not isinstance(exc, OSError) or exc.errno is None:
        return None
    # a failed rename (os.replace of a finished temporary file onto the output) names the output second
    target = exc.filename2 or exc.filename
    where = f"'{target}'" if target else "a file"
    if exc.filename2 and exc.errno in (errno.EACCES, errno.EPERM) and sys.platform == "win32":
        if _read_only_file(target):  # Windows replaces no such file: closing programs did not help
            return (f"Cannot replace {where} ({exc.strerror}): the file is read-only (its Read-only attribute is "
                    f"set, as on files copied from a CD or DVD); clear it (the file's Properties, or attrib -r) and "
                    f"run again, or choose another output name.")
        return (f"Cannot replace {where} ({exc.strerror}): it is probably open in another program (a viewer, "
                f"Excel, Slicer); close it there and run again, or choose another output name.")
    if exc.filename2 and exc.errno in (errno.EACCES, errno.EPERM):  # elsewhere an open file is replaced anyway
        return (f"Cannot replace {where} ({exc.strerror}): its folder's permissions or the file's attributes (e.g. "
                f"immutable) forbid it; fix them, or choose another output name.")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"Cannot write or read {where} ({exc.strerror}); choose another location or fix its "
                f"permissions.")
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return f"No space left for {where} ({exc.strerror}); free disk space or choose another output location."
    if exc.errno == errno.EFBIG:  # a preview PNG under `ulimit -f` was an 'internal error ... please report it'
        return (f"Cannot write {where} ({exc.strerror}): the file would be larger than allowed here, by a file-size "
                f"limit on this process (ulimit -f) or by the file system (FAT32: 4 GiB); raise the limit or choose "
                f"another output location.")
    if exc.errno in (errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EEXIST):
        return f"{where}: {exc.strerror}; check the path."
    return None


def _read_only_file(path: Any) -> bool:
    """Whether ``path`` is a file without write permission in its mode (on Windows: its Read-only attribute)."""
    import stat

    try:
        return os.path.isfile(path) and not os.stat(path).st_mode & stat.S_IWRITE
    except (OSError, TypeError, ValueError):
        return False


def missing_package_text(exc: BaseException) -> Optional[str]:
    """The user's words for a third-party Python package a command needs but the environment lacks (matplotlib in
    Slicer's Python, which the module does not install: 'segment --preview' was an 'internal error'); None for
    anything else, a module of this library included (a bug to report)."""
    name = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    if not name or name.split(".")[0] == "LiverTumorSegLib":
        return None
    package = name.split(".")[0]
    return (f"this command needs the Python package '{package}', which is not installed here: install it "
            f"(pip install {package}; in 3D Slicer's Python console: slicer.util.pip_install('{package}')) and "
            f"run again.")


def user_error_text(exc: BaseException, batch_size_option: bool = False) -> Optional[str]:
    """The one-line message for an exception that is the user's to fix (out of memory, a file-system error, a
    missing package: exit 2), or None for a bug (exit 1). The CLI and ``segment --progress json`` share it.
    ``batch_size_option``: the command has ``--batch-size`` (its network's batch), which the out-of-memory advice
    then names (:func:`~.errors.out_of_memory_error`); ``evaluate`` and ``measure`` have none."""
    with cli_wording():
        memory = out_of_memory_error(exc, batch_size_option=batch_size_option)
    if memory is not None:
        return str(memory)
    return file_system_error_text(exc) or disk_full_text(exc) or missing_package_text(exc)


def disk_full_text(exc: BaseException) -> Optional[str]:
    """The user's words for a full disk that a library reports without an error number (None otherwise): pydicom
    ('With tag (7FE0,0010) got exception: [Errno 28] No space left on device'), numpy's short write ('688128
    requested and 261088 written', the training slice cache) and PyTorch's checkpoint writer ('[enforce fail at
    inline_container.cc...] . unexpected pos'). Each was an 'internal error ... please report it' with exit 1."""
    import re

    text = str(exc)
    if isinstance(exc, OSError) and ("No space left on device" in text or "[Errno 28]" in text):
        reason = "no space left on the disk"
    elif isinstance(exc, OSError) and re.search(r"\d+ requested and \d+ written", text):
        reason = ("a file was written only in part, most likely because the disk is full or a file-size limit "
                  "(ulimit -f) was reached")
    elif isinstance(exc, RuntimeError) and "inline_container" in text and "unexpected pos" in text:
        reason = "PyTorch could not finish writing a file, most likely because the disk is full"
    else:
        return None
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    target = getattr(exc, "written_path", None)  # the output being written, where known (fileutil.atomic_output)
    where = f" '{target}'" if target else ""
    return f"Cannot write{where}: {reason} ({first}); free disk space or choose another output location, and run again."


PEER_FAILURE_WORDS = ("Connection closed by peer", "Connection reset by peer", "remote worker crash",
                      "NCCL communicator was aborted", "Broken pipe")
"""What torch.distributed (gloo, NCCL) says on a rank whose peer process has exited."""


def peer_process_failure_text(exc: BaseException) -> Optional[str]:
    """Under ``torchrun`` (WORLD_SIZE > 1), the message for a collective call that failed because another rank
    stopped (its own error, printed by that rank, is the one to read); None otherwise. Such a rank said
    "internal error ... please report it" beside the real error."""
    from .training.launch_env import env_rank, env_world_size

    if env_world_size() <= 1 or not isinstance(exc, RuntimeError):
        return None
    if not any(words in str(exc) for words in PEER_FAILURE_WORDS):
        return None
    return (f"training process {env_rank()} of {env_world_size()} stopped because "
            f"another one did; that process's error (printed above) says why.")


def stopped_exit_code(exc: KeyboardInterrupt) -> int:
    """A command or script stopped by Ctrl-C (``interrupted``, 130) or by :class:`Terminated` (one ``error:
    terminated ...`` line, 128 + the signal's number): the line on stderr and the exit code."""
    if isinstance(exc, Terminated):
        print(f"error: {terminated_text(exc.signal_name)}", file=sys.stderr)
        return exc.exit_code
    print("interrupted", file=sys.stderr)
    return 130


def terminated_text(signal_name: str = "SIGTERM") -> str:
    """What a command stopped by SIGTERM (or ``signal_name``) prints. Under ``torchrun`` the agent sends SIGTERM to
    every process after Ctrl-C or when one of them fails, so there it names the process and both causes."""
    from .training.launch_env import env_rank, env_world_size

    if signal_name != "SIGTERM":
        return f"terminated ({signal_name}); unfinished output files were removed"
    if env_world_size() > 1:
        return (f"training process {env_rank()} of {env_world_size()} terminated (SIGTERM); torchrun sends it to "
                f"every process when the run is interrupted (Ctrl-C) or one process failed (that process's error, "
                f"printed above, says why); unfinished output files were removed")
    return "terminated (SIGTERM); unfinished output files were removed"


def run_script(function: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """The benchmark and maintenance scripts' entry (``sys.exit(run_script(main))``): ``function(...)`` under the
    CLI's error rules. A user error (:class:`LiverTumorSegError`, a file-system error such as a missing path, out
    of memory, a missing package) is one ``error:`` line on stderr, worded for the command line, and exit 2; a
    bug keeps its traceback. Ctrl-C is ``interrupted`` and exit 130, SIGTERM and SIGHUP (:func:`_stop_signals`,
    main thread only) one ``error: terminated ...`` line and 128 + the signal's number, as for the CLI's commands,
    each after its ``atomic_output`` removed its temporary file (before, Ctrl-C printed a KeyboardInterrupt
    traceback and SIGTERM ended the script without a word, its temporaries left behind). Returns the function's
    exit code (0 for None)."""
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {signum: signal.signal(signum, _raise_terminated) for signum in _stop_signals()} if in_main_thread \
        else {}
    try:
        with cli_wording():
            result = function(*args, **kwargs)
    except KeyboardInterrupt as exc:  # Ctrl-C, or Terminated (SIGTERM, SIGHUP)
        return stopped_exit_code(exc)
    except LiverTumorSegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - sorted below: the user's to fix, or a bug (re-raised)
        text = user_error_text(exc)
        if text is None and isinstance(exc, FileNotFoundError) and exc.filename:  # a path given to the script
            text = f"'{exc.filename}' does not exist; check the path."
        if text is None:
            raise
        print(f"error: {text}", file=sys.stderr)
        return 2
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return int(result or 0)


def console_main() -> None:
    """The ``livertumorseg`` executable: :func:`main`, then exit. After Ctrl-C or SIGTERM (whose cleanup has run
    by then), a model load still running in the background (``segmenter._load_in_background``: importing torch
    and MONAI takes seconds) is not waited for: the process ends at once instead of seconds later."""
    for stream in (sys.stdout, sys.stderr):  # a path the console's code page cannot show must not end the run
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError):  # replaced by something without reconfigure, or closed
            pass
    code = main()
    if code in (129, 130, 143) and any(t.name.startswith("model-load") and t.is_alive() for t in threading.enumerate()):
        _flush_standard_streams(code)
        os._exit(code)
    if _may_skip_interpreter_teardown():
        _exit_without_teardown(code)
    sys.exit(code)


FULL_EXIT_VARIABLE = "LIVERTUMORSEG_FULL_EXIT"
"""Set (to anything but '' or 0) to end the ``livertumorseg`` process through Python's whole teardown, e.g. under a
profiler that writes its results after the entry point returns."""


def _may_skip_interpreter_teardown() -> bool:
    """Whether the finished command may end with :func:`_exit_without_teardown`: no other thread is still alive
    but daemon ones (a live non-daemon thread might still be writing), no profiler, tracer or coverage tool is
    attached (through ``sys.setprofile``/``settrace``, or, from Python 3.12, ``sys.monitoring``, which cProfile and
    coverage.py use there: the process ended before cProfile wrote its ``-o`` file), and :data:`FULL_EXIT_VARIABLE`
    is not set."""
    if os.environ.get(FULL_EXIT_VARIABLE, "") not in ("", "0"):
        return False
    if sys.gettrace() is not None or sys.getprofile() is not None:
        return False
    if sys.flags.inspect or os.environ.get("PYTHONINSPECT"):  # `python -i`: its prompt comes after the command
        return False
    if _run_by_a_debugger():
        return False
    monitoring = getattr(sys, "monitoring", None)
    if monitoring is not None and any(monitoring.get_tool(tool) is not None for tool in range(6)):
        return False  # tool ids 0-5: debugger, coverage, profiler, optimizer and the two reserved ones
    return all(t.daemon or t is threading.main_thread() for t in threading.enumerate() if t.is_alive())


def _exit_without_teardown(code: int) -> None:
    """End the process once its work is done without Python's interpreter teardown: after a 300-slice CT,
    freeing every module and object (torch's, MONAI's, the arrays) took 0.56-0.66 s of a 16-21 s `segment`
    (three interleaved pairs, measured 25 Nov 2026), time the user waits for nothing. Every output is written and
    closed by then (each through an atomic rename); the exit functions (``atexit``: logging's flush, temporary
    folders' removal, multiprocessing's children) still run, and the standard streams are flushed."""
    import atexit

    atexit._run_exitfuncs()
    os._exit(_flush_standard_streams(code))


def _run_by_a_debugger() -> bool:
    """Whether the command runs under pdb (``python -m pdb -m LiverTumorSegLib ...``): a frame of the standard
    library's debugger (``bdb``) is on the call stack. Without breakpoints pdb removes its tracer, and the fast exit
    then ended the process before pdb regained control ("The program finished")."""
    frame = sys._getframe()
    while frame is not None:
        if os.path.basename(frame.f_code.co_filename) in ("bdb.py", "pdb.py"):
            return True
        frame = frame.f_back
    return False


def _flush_standard_streams(code: int) -> int:
    """Flush stdout and stderr before an ``os._exit``; returns the exit status to use: ``code``, or 120 (what
    Python's own exit returns when its final flush fails) when stdout could not be written (a full disk: the
    output was lost and the exit said 0). A closed pipe (`| head`), a closed stream and a stream that is None
    (`>&-`; ``None.flush`` ended the command with an AttributeError) are not errors."""
    for stream in (sys.stdout, sys.stderr):
        if stream is None:
            continue
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # the reader went away, or the stream was closed: nothing to say
            pass
        except OSError as exc:
            if stream is sys.stdout:
                try:
                    if sys.stderr is not None:
                        sys.stderr.write(f"error: the output could not be written to stdout ({exc}).\n")
                        sys.stderr.flush()
                except (OSError, ValueError):
                    pass
                code = code or 120
    return code


class _StreamOutlivingItsReader:
    """``sys.stdout`` or ``sys.stderr`` while a command runs (:func:`_standard_streams_outliving_their_reader`):
    writes go to ``stream`` until its reader has gone (a broken pipe: ``2>&1 | head``), then, like every later
    write, to the null device, and the command goes on. A print whose reader had gone ended the command where it
    stood, and the command line, taking the broken pipe for the reader's choice, exited 0: ``train ... | head``
    trained part of the run and wrote no package, ``measure`` wrote no report. Another write error (stdout on a full
    disk) names the stream (``name``: ``<stdout>``): it said "No space left for a file". Anything else is
    ``stream``'s."""

    def __init__(self, stream: Any, name: str) -> None:
        self._stream = stream
        self._name = name

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._reader_gone()
            return len(text)
        except OSError as exc:
            self._name_in(exc)
            raise

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._reader_gone()
        except OSError as exc:
            self._name_in(exc)
            raise

    def _name_in(self, exc: OSError) -> None:
        if exc.filename is None:
            exc.filename = self._name

    def _reader_gone(self) -> None:
        """The stream's file descriptor onto the null device: what it still holds and what comes later go there
        (also the final flush at exit, and a C library's writes to the descriptor)."""
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._stream.fileno())
            os.close(null)
            self._stream.flush()
        except (OSError, ValueError, AttributeError):  # no descriptor of its own: write nowhere from now on
            self._stream = _null_stream()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


_NULL_STREAM = []  # type: List[Any]


def _null_stream() -> Any:
    """A text stream on the null device, opened once and kept open (a logging handler made while a command ran may
    still hold it)."""
    if not _NULL_STREAM:
        _NULL_STREAM.append(open(os.devnull, "w", encoding="utf-8"))
    return _NULL_STREAM[0]


def _fill_closed_standard_descriptors() -> None:
    """Each of the descriptors 0, 1 and 2 closed at the start onto the null device (kept open): the next file
    opened takes the lowest free descriptor, and an output file at 2 would take in whatever a library writes to
    stderr."""
    for descriptor in (0, 1, 2):
        try:
            os.fstat(descriptor)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # the lowest free descriptor: this one (those below are open)


@contextlib.contextmanager
def _standard_streams_outliving_their_reader() -> Iterator[None]:
    """``sys.stdout`` and ``sys.stderr`` as :class:`_StreamOutlivingItsReader` for the block; one closed at the
    start (``>&-``, ``2>&-``: None) as the null device (:func:`_fill_closed_standard_descriptors`). A command
    whose first write found stderr None ended with 'internal error: AttributeError: NoneType has no attribute
    write' (``train``'s progress bar), its outputs unwritten. The streams are back as they were afterwards."""
    _fill_closed_standard_descriptors()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = (_StreamOutlivingItsReader(_null_stream() if stream is None else stream, name)
                              for stream, name in zip(saved, ("<stdout>", "<stderr>")))
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def main(argv: Optional[List[str]] = None) -> int:
    """Run one command; SIGTERM and SIGHUP (:func:`_stop_signals`) are handled like Ctrl-C while it runs (main thread
    only). Its output whose reader has gone, or that was closed at the start, does not stop it
    (:func:`_standard_streams_outliving_their_reader`)."""
    with _standard_streams_outliving_their_reader():
        return _main_handling_signals(argv)


def _main_handling_signals(argv: Optional[List[str]] = None) -> int:
    """:func:`_main`, with SIGTERM and SIGHUP handled like Ctrl-C (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return _main(argv)
    previous = {signum: _after_the_start(signal.signal(signum, _raise_terminated)) for signum in _stop_signals()}
    watch = None
    try:
        _end_quiet_start()  # a Ctrl-C from here on is the KeyboardInterrupt caught below (or by the command)
        from .parent_watch import watch_parent_from_environment

        watch = watch_parent_from_environment()  # started by a program that may be killed: stop with it
        return _main(argv)
    except Terminated as exc:  # while the parser was built (imports): the command's own handler was not reached yet
        print(f"error: terminated ({exc.signal_name}) before any work started", file=sys.stderr)
        return _cancelled_before_the_command(argv, exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return _cancelled_before_the_command(argv, 130)
    finally:
        if watch is not None:
            watch.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _after_the_start(handler):
    """The handler to give a signal back after the command: Python's default for the start's own
    (:func:`_terminated_while_starting`, whose 'before any work started' would be untrue then), else ``handler``."""
    return signal.SIG_DFL if handler is _terminated_while_starting else handler


def _cancelled_before_the_command(argv: Optional[List[str]], exit_code: int) -> int:
    """The exit status of a run a signal stopped before its command's own handler ran (while the parser was built):
    ``exit_code``, but under ``--progress json`` the protocol's final line ``{"error": "cancelled"}`` and 130, as
    for a cancel later on (a SIGTERM in the first ~0.7 s gave no final line and exit 143)."""
    if not _wants_json_progress(list(sys.argv[1:] if argv is None else argv)):
        return exit_code
    print(json.dumps({"error": "cancelled"}), flush=True)
    return 130


QUIET_UNDER_DEBUG = ("matplotlib", "PIL")
"""Loggers kept at INFO under ``--debug``: libraries whose debug lines say nothing about this program's work."""


EMPTY_VALUE_ALLOWED = ("--title",)
"""Options whose value may be empty (``followup --title ''``: no text before the response)."""


def empty_argument_text(raw: List[str], flags: Iterable[str] = ()) -> Optional[str]:
    """The refusal of an empty argument among the command line's ``raw`` arguments, or None: an option given ''
    (``--ct ''``, ``--ct=''``: a script's ``--ct "$CT"`` with ``CT`` unset) was taken as not given (measure ran
    without the CT, followup aligned on the labels) or as the folder '.' ('Output '.' has no file extension'), and an
    empty input as '.' (the command-line audit). :data:`EMPTY_VALUE_ALLOWED` may be empty. ``flags``: options that
    take no value (``--overwrite``): a '' after one is an empty argument of its own, not its value."""
    flags = set(flags)
    for i, token in enumerate(raw):
        if token.startswith("--") and "=" in token:
            name, value = token.split("=", 1)
            if value == "" and name not in EMPTY_VALUE_ALLOWED:
                return (f"{name} was given an empty value; give one (an unset shell variable, such as "
                        f"{name} \"$X\" with X unset?), or leave the option out.")
        elif token == "":
            before = raw[i - 1] if i else ""
            if before.startswith("-") and before != "--" and "=" not in before and before not in flags:
                if before in EMPTY_VALUE_ALLOWED:
                    continue
                return (f"{before} was given an empty value; give one (an unset shell variable, such as "
                        f"{before} \"$X\" with X unset?), or leave the option out.")
            return "an empty argument ('') was given; give the file or folder meant (an unset shell variable?)."
    return None


def _is_control_character(character: str) -> bool:
    """A C0 control character other than the tab and the line feed, or DEL: a line feed is in pretty-printed JSON
    given as an option's value (--label-map "$(cat map.json)"), in a --title of two lines, and in a file name
    Linux allows."""
    return (ord(character) < 32 and character not in "\t\n") or ord(character) == 127


def control_character_text(raw: List[str]) -> Optional[str]:
    """The refusal of an argument holding a control character (a carriage return, an escape, ...; a tab and a line
    feed are taken), or None. A script saved with Windows line endings ends its last argument in '\r': a missing input's
    message overwrote itself on the terminal ('does not exist' alone was left), and `-o out\r` made a folder
    named 'out\r' and said it wrote 'out/...' (the portability audit)."""
    for token in raw:
        bad = [c for c in token if _is_control_character(c)]
        if bad:  # shown escaped; 'Müller' stays as it is
            shown = "".join(repr(c)[1:-1] if _is_control_character(c) else c for c in token)
            windows = (" The script that ran this has Windows line endings (CR LF): convert it (dos2unix, or your "
                       "editor's 'LF' line endings)." if bad == ["\r"] and token.endswith("\r") else "")
            return f"the argument '{shown}' holds a control character ({repr(bad[0])[1:-1]}).{windows}"
    return None


def _main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    raw = list(sys.argv[1:] if argv is None else argv)
    control = control_character_text(raw)
    if control:  # before argparse, whose own messages would print the character too
        if _wants_json_progress(raw):
            print(json.dumps({"error": control}), flush=True)
        print(f"error: {control}", file=sys.stderr)
        return 2
    try:
        args = parser.parse_args(raw)  # unknown options: _CommandAwareParser names the command's usage
    except SystemExit as exc:  # usage error (argparse printed it on stderr) or --help / --version
        if exc.code not in (0, None) and _wants_json_progress(raw):
            print(json.dumps({"error": "invalid command-line arguments (usage on stderr)"}), flush=True)
        raise
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(message)s")
    if not args.debug:  # nibabel's notes on header fixes ("pixdim[1,2,3] should be positive"), printed twice
        logging.getLogger("nibabel").setLevel(logging.CRITICAL)  # an unreadable header raises: our error says it
    for name in QUIET_UNDER_DEBUG:  # their own debug lines buried ours: `segment --preview` gave 231 lines, 220
        logging.getLogger(name).setLevel(logging.INFO)  # of them matplotlib scoring each font file it knows
    if args.command is None:
        parser.print_help()
        return 2
    if getattr(args, "_unavailable", None):
        print(f"error: command '{args.command}' is unavailable: {args._unavailable}", file=sys.stderr)
        return 2
    command = (getattr(args, "_command_parsers", None) or {}).get(args.command)
    empty = empty_argument_text(raw, [o for a in getattr(command, "_actions", []) if a.nargs == 0
                                      for o in a.option_strings])
    if empty:
        if _wants_json_progress(raw):
            print(json.dumps({"error": empty}), flush=True)
        print(f"error: {empty}", file=sys.stderr)
        return 2
    try:
        with cli_wording():  # messages name --flags, not Python arguments
            return int(args._run(args) or 0)
    except LiverTumorSegError as exc:
        if args.debug:  # the traceback, and still exit 2: a user error is not made an internal one (exit 1) by
            # --debug, which a caller of --progress json reads as a bug
            import traceback

            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or Terminated (SIGTERM, SIGHUP)
        return stopped_exit_code(exc)
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early: not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:  # noqa: BLE001 - last-resort message for bugs
        text = user_error_text(exc, batch_size_option=hasattr(args, "batch_size"))  # segment, train, crossval
        peer = peer_process_failure_text(exc)
        if args.debug:
            if text is None and peer is None:
                raise  # an internal error: the traceback, exit 1
            import traceback

            traceback.print_exc()  # a user error (out of memory, ...) keeps its exit 2 under --debug
        if text is not None:
            print(f"error: {text}", file=sys.stderr)
            return 2
        if peer is not None:
            print(f"error: {peer}", file=sys.stderr)
            return 2
        print(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback; "
              f"please report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
