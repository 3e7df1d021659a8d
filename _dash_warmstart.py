"""The ``dash-warmstart`` command's entry point, kept outside the package on purpose.

Importing :mod:`torch_dash_optim` imports torch, which takes a second or two. An entry point
inside the package is imported by the console script before any of our code runs, and a Ctrl-C
in that time raises :class:`KeyboardInterrupt` inside torch's own import: Python's traceback at
best; at worst the signal is lost, or a C++ exception aborts the process (all three were seen).
This module imports nothing heavy: :func:`run` imports the command with Ctrl-C only recorded,
then acts on it. It is not an API. (It cannot reuse
``torch_dash_optim._interrupts.deferred_interrupts``: importing that imports the package, and
so torch, which is exactly the import to hold Ctrl-C back over.)
"""

from __future__ import annotations

import signal
import sys


def run() -> int:
    """Import ``torch_dash_optim.experiments.cli`` with Ctrl-C held back, then run its ``main``.

    Returns
    -------
    int
        What :func:`torch_dash_optim.experiments.cli.main` returns, or ``130`` when Ctrl-C came
        while the command was being imported (nothing has been written then).
    """
    received: list[object] = []
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.SIG_IGN:  # started with Ctrl-C ignored (a background job): keep it so
        signal.signal(signal.SIGINT, lambda *args: received.append(args))
    try:
        from torch_dash_optim.experiments.cli import main
    finally:
        if previous is not signal.SIG_IGN:
            signal.signal(signal.SIGINT, previous)
    if received:
        print("\ninterrupted while starting (importing torch); nothing was written", file=sys.stderr)
        return 130
    return main()
