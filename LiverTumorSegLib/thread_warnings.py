"""Python warnings hidden for one thread only.

``warnings.catch_warnings`` swaps the process-wide ``warnings.filters`` and ``showwarning`` and puts back what it
found on entry: on a helper thread (a batch's CT reader, the model-load thread) a warning another thread gave
meanwhile (the network, post-processing, a caller's own code) was hidden too, and two such blocks on two threads
could leave each other's filters in place for good (third-party imports on the model-load thread use them too).
:func:`warnings_hidden_in_this_thread` hides the warnings of the thread that runs its block and no other, and
leaves the filters as they are.
"""
import contextlib
import threading
import warnings
from typing import Any, Callable, Iterator

_hidden = threading.local()
_install_lock = threading.Lock()


def _hidden_here() -> bool:
    """Whether the current thread is inside :func:`warnings_hidden_in_this_thread`."""
    return getattr(_hidden, "depth", 0) > 0


def _shown_unless_hidden(show: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``show`` (``warnings._showwarnmsg``) for every thread but those inside a hiding block."""
    def show_unless_hidden(message: Any) -> Any:
        if _hidden_here():
            return None
        return show(message)

    show_unless_hidden.hides_thread_warnings = True  # type: ignore[attr-defined]
    return show_unless_hidden


def _install() -> None:
    """Route the display of every warning through :func:`_shown_unless_hidden`, once per process. Python calls
    ``warnings._showwarnmsg`` for each warning its filters let through (Python 3.6 and later); unlike
    ``showwarning``, ``catch_warnings`` neither replaces it nor puts it back, also with ``record=True``, so a
    thread's hidden warning never lands in another thread's record. Where a Python lacks it, the warnings are
    shown (never another thread's hidden)."""
    with _install_lock:
        show = getattr(warnings, "_showwarnmsg", None)
        if show is None or getattr(show, "hides_thread_warnings", False):
            return
        warnings._showwarnmsg = _shown_unless_hidden(show)  # type: ignore[attr-defined]


@contextlib.contextmanager
def warnings_hidden_in_this_thread() -> Iterator[None]:
    """The block's warnings, those given on this thread, are not shown (nor recorded by a ``catch_warnings
    (record=True)``); other threads' warnings and ``warnings.filters`` are untouched. A filter's ``error`` action
    still raises here (``python -W error``). Python marks a warning as given in its module's registry before it
    is shown, so a hidden one would silence the same warning given later from the same line (the real read after
    a probe); on leaving, the registries are emptied as ``catch_warnings`` does on leaving, and it is shown."""
    _install()
    _hidden.depth = getattr(_hidden, "depth", 0) + 1
    try:
        yield
    finally:
        _hidden.depth -= 1
        _forget_given_warnings()


def _forget_given_warnings() -> None:
    """Empty every module's record of warnings given (``__warningregistry__``), as ``catch_warnings`` does on
    leaving: Python's private ``_filters_mutated`` (3.6 to 3.14); where a Python lacks it, nothing."""
    forget = getattr(warnings, "_filters_mutated", None)
    if forget is not None:
        forget()
