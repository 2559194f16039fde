"""Ctrl-C (SIGINT) and SIGTERM held back for a few statements: :func:`interrupts_deferred`.

A training step changes the weights, the optimizer's moments, the AMP scaler, the scheduler and then the step
counter that the interrupt checkpoint records. On the CPU, torch's AdamW updates the parameters one by one in a
Python loop, and Python delivers a signal between any two statements: an interrupt that landed there saved
"step k done" with (part of) step k + 1's weights, and ``--resume`` then replayed step k + 1 on top of them (49 of
49 weight tensors differed from an uninterrupted run). Inside :func:`interrupts_deferred` a signal is only noted;
it is delivered, to the handler that was in place, when the block ends, so the checkpoint holds a whole step.
"""
import contextlib
import os
import signal
import threading
from typing import Any, Iterator, List, Tuple

HELD_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM") if hasattr(signal, name))


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the ``with`` block and deliver the first one received (to the handler in place
    before the block) when it ends normally. Outside the main thread (where Python runs signal handlers) it does
    nothing. A block that raises drops the held signal: its exception already ends the run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: List[Tuple[int, Any]] = []

    def hold(signum: int, frame: Any) -> None:
        received.append((signum, frame))

    previous = {}
    try:
        for signum in HELD_SIGNALS:
            previous[signum] = signal.getsignal(signum)
            signal.signal(signum, hold)
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
    if received:
        signum, frame = received[0]
        handler = previous.get(signum)
        if callable(handler):
            handler(signum, frame)
        elif handler != signal.SIG_IGN:  # the default action (or a handler set outside Python): the signal again
            os.kill(os.getpid(), signum)
