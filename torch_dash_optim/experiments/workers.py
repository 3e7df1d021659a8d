"""Independent pieces of work (whole protocol runs) in worker processes, for the commands that run many.

:func:`run_in_workers` hands each item to ``fn`` in a ``spawn`` worker process (one torch
thread each) and gives every result back to the parent as soon as it is ready, so that the
parent can save it at once and a later ``--resume`` skips it. The tuning command
(:mod:`.tuning`) and the noise sweep (:mod:`.mechanism`) use it for units that one
:func:`~torch_dash_optim.experiments.run_protocol` call cannot hold (other settings per unit,
or a measurement that must stay in the process that ran it). Ctrl-C is recorded, never raised
inside ``multiprocessing``'s own code: the workers are stopped and what finished is kept.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

import torch

from .._interrupts import deferred_interrupts, sigint_blocked

__all__ = ["run_in_workers", "stop_workers"]

def _init(threads: int) -> None:
    """A worker ignores Ctrl-C (the parent stops it) and runs ``threads`` torch threads."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)


def run_in_workers(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    done: Callable[[Any, Any], None],
    *,
    jobs: int = 1,
    threads: int = 1,
) -> None:
    """Call ``fn(item)`` for every item, in ``jobs`` worker processes, and ``done(item, result)`` in this one.

    Parameters
    ----------
    fn:
        A module-level (picklable) function of one item.
    items:
        Picklable items.
    done:
        Called in this process with each item and its result, as each finishes.
    jobs:
        Worker processes (``spawn``); 1 runs everything in this process, in order.
    threads:
        torch threads of each worker (``jobs > 1`` only).

    Raises
    ------
    KeyboardInterrupt
        After Ctrl-C, once the workers are stopped (the results handed to ``done`` so far stay).

    Examples
    --------
    >>> out = []
    >>> run_in_workers(abs, [-2, 3], lambda item, result: out.append((item, result)))
    >>> out
    [(-2, 2), (3, 3)]
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs={jobs!r} must be an integer >= 1 (1: run everything in this process)")
    items = list(items)
    if jobs == 1 or len(items) <= 1:
        for item in items:
            done(item, fn(item))
        return
    with deferred_interrupts() as ctrl_c:
        pool = ProcessPoolExecutor(
            min(jobs, len(items)), mp_context=mp.get_context("spawn"), initializer=_init, initargs=(threads,)
        )
        try:
            with sigint_blocked():  # workers start with SIGINT blocked, then ignore it
                futures = {pool.submit(fn, item): item for item in items}
            pending = set(futures)
            while pending:
                if ctrl_c:
                    ctrl_c.clear()
                    raise KeyboardInterrupt
                ready, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in ready:
                    done(futures[future], future.result())
            pool.shutdown(wait=True)
        except BaseException:
            stop_workers(pool)
            raise


def stop_workers(pool: ProcessPoolExecutor) -> None:
    """Stop a pool's workers now: what they were running is lost, what finished was handed over.

    ``ProcessPoolExecutor`` has no public way to stop running workers before Python 3.14
    (``terminate_workers``); before it, its process table is used.

    Examples
    --------
    >>> import multiprocessing as mp, time
    >>> from concurrent.futures import ProcessPoolExecutor
    >>> pool = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"))
    >>> future = pool.submit(time.sleep, 60)
    >>> start = time.monotonic()
    >>> stop_workers(pool)  # does not wait for the minute of sleep
    >>> time.monotonic() - start < 30
    True
    """
    terminate = getattr(pool, "terminate_workers", None)
    if terminate is not None:  # Python 3.14
        terminate()
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
    pool.shutdown(wait=True, cancel_futures=True)
