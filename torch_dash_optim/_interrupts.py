"""Hold Ctrl-C back over a few lines that must run to the end once started."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Delay SIGINT until the block is done, then deliver it as the previous handler would.

    A SIGINT received inside the block is recorded, not acted on. After the block, the previous
    handler is put back and, if a SIGINT came, it is delivered: a Python handler is called (the
    default one raises :class:`KeyboardInterrupt`), ``SIG_IGN`` ignores it, and ``SIG_DFL``
    re-raises the signal. Only the main thread receives signals; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[Any] = []
    previous = signal.signal(signal.SIGINT, lambda *args: received.append(args))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            _deliver(previous, received[0])


def _deliver(previous: Any, args: Any) -> None:
    if previous is signal.SIG_IGN:
        return
    if callable(previous):
        previous(*args)
    elif previous is signal.SIG_DFL:
        signal.raise_signal(signal.SIGINT)
    else:  # a handler installed outside Python
        raise KeyboardInterrupt
