"""Exceptions with messages meant for the user: what is wrong and what to do about it.

The CLI prints ``error: <message>`` (no traceback unless ``--debug``) and exits with code 2 for any
:class:`LiverTumorSegError`. Messages should name the file or value and suggest the fix, in the caller's
words: :func:`option_hint` gives ``--overwrite`` under the command line and ``overwrite=True`` from Python.
"""
import contextlib
import contextvars
from typing import Iterator

_CLI_WORDING = contextvars.ContextVar("livertumorseg_cli_wording", default=False)


def option_hint(cli_flag: str, python_argument: str) -> str:
    """How a message names an option: ``cli_flag`` while :func:`cli_wording` is active (the ``livertumorseg``
    command), else ``python_argument`` (library calls), e.g. ``option_hint("--overwrite", "overwrite=True")``."""
    return cli_flag if _CLI_WORDING.get() else python_argument


@contextlib.contextmanager
def cli_wording() -> Iterator[None]:
    """Within this block (the CLI's command run), messages name command-line flags."""
    token = _CLI_WORDING.set(True)
    try:
        yield
    finally:
        _CLI_WORDING.reset(token)


class LiverTumorSegError(Exception):
    """Base class of all errors that are the user's input, not a bug."""


class InputError(LiverTumorSegError):
    """An input file, folder or value is missing, unreadable, or not what the operation needs."""


class LabelError(InputError):
    """A label map has wrong values, shape or geometry for its image."""


class ModelPackageError(LiverTumorSegError):
    """A model package is missing, corrupt, tampered with, or inconsistent."""


class OutputExistsError(LiverTumorSegError):
    """The output path exists and overwriting was not requested."""


class CancelledError(LiverTumorSegError):
    """The user cancelled a long-running operation."""


class ResourceError(LiverTumorSegError):
    """Not enough memory / device for the requested work."""
