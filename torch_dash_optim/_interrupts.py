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
    """Record SIGINT inside the block and deliver it after, as the previous handler would (main thread only).

    Yields the list of SIGINTs received so far: a long block may poll it, and clear it to stop early.
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
    """Block SIGINT in this (main) thread inside, so that processes spawned here start with it blocked."""
    # A Ctrl-C sent to the whole process group (what a terminal does) then cannot kill a child in
    # its start-up, before it can choose to ignore the signal. A SIGINT arriving inside is held and
    # goes to the handler on leaving. Without signal.pthread_sigmask this does nothing.
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
