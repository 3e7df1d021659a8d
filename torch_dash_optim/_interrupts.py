"""Hold Ctrl-C back over code that must run to the end once started.

An asynchronous :class:`KeyboardInterrupt` can land between any two bytecodes, including between
a lock's ``acquire`` and the ``try`` that would release it. Code that is not written for that
(``multiprocessing``'s queues, the process pool's bookkeeping) then keeps a lock forever, and a
later user of it (the queue's finalizer, at the latest at exit) waits forever. The helpers here
record Ctrl-C instead, so the caller acts on it at a point of its choosing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[list[Any]]:
    """Delay SIGINT until the block is done, then deliver it as the previous handler would.

    A SIGINT received inside the block is recorded, not acted on. After the block, the previous
    handler is put back and, if a SIGINT came, it is delivered: a Python handler is called (the
    default one raises :class:`KeyboardInterrupt`), ``SIG_IGN`` ignores it, and ``SIG_DFL``
    re-raises the signal. Only the main thread receives signals; elsewhere this does nothing.

    Yields
    ------
    list
        The SIGINTs received so far, one entry each: a long block can poll it and stop early
        (clearing it first, so that the stop is not delivered a second time on leaving).
    """
    received: list[Any] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = signal.signal(signal.SIGINT, lambda *args: received.append(args))
    try:
        yield received
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            _deliver(previous, received[0])


@contextlib.contextmanager
def sigint_blocked() -> Iterator[None]:
    """Block SIGINT in this thread inside; processes started here inherit the block.

    A process spawned inside starts with SIGINT blocked, so a Ctrl-C sent to the whole process
    group (what a terminal does) cannot kill it in its start-up, before it can choose to ignore
    the signal. A SIGINT that arrives inside is held and goes to the handler on leaving. Where
    ``signal.pthread_sigmask`` does not exist, or outside the main thread, this does nothing.
    """
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _deliver(previous: Any, args: Any) -> None:
    if previous is signal.SIG_IGN:
        return
    if callable(previous):
        previous(*args)
    elif previous is signal.SIG_DFL:
        signal.raise_signal(signal.SIGINT)
    else:  # a handler installed outside Python
        raise KeyboardInterrupt
