"""Exceptions with messages meant for the user: what is wrong and what to do about it.

The CLI prints ``error: <message>`` (no traceback unless ``--debug``) and exits with code 2 for any
:class:`LiverTumorSegError`. Messages should name the file or value and suggest the fix, in the caller's
words: :func:`option_hint` gives ``--overwrite`` under the command line and ``overwrite=True`` from Python.
"""
import contextlib
import contextvars
from typing import Iterator, Optional

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


def submit_in_caller_context(executor, function, *args, **kwargs):
    """``executor.submit(function, ...)`` run in a copy of the caller's context: a worker thread does not inherit
    context variables, so a model load or a batch case finished there named ``tta=True`` to a command-line user
    instead of ``--tta``."""
    return executor.submit(contextvars.copy_context().run, function, *args, **kwargs)


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


# Words in the messages of allocation failures that are not MemoryError: PyTorch's CPU allocator, oneDNN (which
# reports a failed workspace allocation as a primitive it could not create), CUDA's allocator, and ITK's image
# buffer (SimpleITK's RuntimeError "...itkImportImageContainer.hxx:179:\nFailed to allocate memory for image.").
_ORT_ALLOCATION_WORDS = "Failed to allocate memory"  # ONNX Runtime's arena; ITK's words begin alike
_OUT_OF_MEMORY_WORDS = ("can't allocate memory", "could not create a primitive", "out of memory",
                        _ORT_ALLOCATION_WORDS, "Caught MemoryError")  # the last: a DataLoader worker's, re-raised


def _is_runtime_failure(exc: BaseException) -> bool:
    """A RuntimeError, or one of ONNX Runtime's own exceptions (``Fail``, ``RuntimeException``: plain
    Exception subclasses in ``onnxruntime.capi``)."""
    return isinstance(exc, RuntimeError) or type(exc).__module__.startswith("onnxruntime")


def out_of_memory_error(exc: BaseException, batch_size_option: bool = False, reading: str = ""
                        ) -> Optional["ResourceError"]:
    """A :class:`ResourceError` telling the user what to do when ``exc`` is an allocation failure (MemoryError,
    or a RuntimeError of PyTorch's / oneDNN's / CUDA's allocator, or ONNX Runtime's arena); None for anything
    else. ``batch_size_option``: the work runs a network whose batch the user can make smaller (``segment``,
    ``train``, ``crossval``): the advice adds a GPU and ``--batch-size 1``; without it (``evaluate``,
    ``measure``, reading a file) the advice is about memory alone. ``reading``: the file (or DICOM folder) being
    read, named."""
    return _out_of_memory_error(exc, _reading_text(reading), batch_size_option)


def _reading_text(reading: str, series: str = "") -> str:
    """Where an allocation failed, after "Ran out of memory": " reading '...'" (" reading series S of '...'") or ""."""
    if not reading:
        return ""
    return f" reading series {series} of '{reading}'" if series else f" reading '{reading}'"


def _out_of_memory_error(exc: BaseException, where: str, batch_size_option: bool = False
                         ) -> Optional["ResourceError"]:
    """:func:`out_of_memory_error` saying ``where`` it happened (" reading '...'", or "") after "Ran out of
    memory"."""
    if isinstance(exc, MemoryError):
        detail = str(exc) or "MemoryError"
    elif _is_runtime_failure(exc) and any(w in str(exc) for w in _OUT_OF_MEMORY_WORDS):
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        # the line saying it (SimpleITK's first line names its source file: "Exception thrown in ...hxx:179:")
        detail = next((line for line in lines if any(w in line for w in _OUT_OF_MEMORY_WORDS)), type(exc).__name__)
        if _ORT_ALLOCATION_WORDS in detail:  # ONNX Runtime's line names its node first
            detail = detail[detail.index(_ORT_ALLOCATION_WORDS):]
    else:
        return None
    if batch_size_option:
        smaller_batch = option_hint("--batch-size 1", "batch_size=1")
        advice = (f"or use a machine with more memory or a GPU; {smaller_batch} lowers what the network needs, not "
                  f"what the whole CT needs.")
    else:
        advice = "or use a machine with more memory."
    return ResourceError(f"Ran out of memory{where} ({detail[:160].rstrip('.')}). Close other programs to free memory, "
                         f"{advice}")


def raise_if_out_of_memory(exc: BaseException, reading: str = "", series: str = "") -> None:
    """For a file reader's broad ``except``, before it words ``exc`` as a bad file: raise
    :func:`out_of_memory_error` (naming the file ``reading``, and the DICOM ``series`` read from that folder when
    given) when ``exc`` is an allocation failure; return otherwise. A MemoryError while decoding a large CT said
    "the file is truncated or corrupt"."""
    memory = _out_of_memory_error(exc, _reading_text(reading, series))
    if memory is not None:
        raise memory from exc
