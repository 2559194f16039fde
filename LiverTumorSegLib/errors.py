"""Exceptions with messages meant for the user: what is wrong and what to do about it.

The CLI prints ``error: <message>`` (no traceback unless ``--debug``) and exits with code 2 for any
:class:`LiverTumorSegError`. Messages should name the file or value and suggest the fix.
"""


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
