"""Side-by-side timing: interleaved repeats, medians and paired ratios.

Methods are run in turn within each repeat (the order rotates from one repeat to the next),
so that slow phases of a shared machine hit every method alike. A ratio is reported as the
median over repeats of the *paired* ratio (method / reference within the same repeat).

On CPU the clock is the process's CPU time (:func:`time.process_time`, all threads), which
does not count the time other processes hold the cores; the runner pins torch to one thread
so that no parallel region waits on a preempted worker. On CUDA it is wall time between two
``torch.cuda.synchronize`` calls.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

__all__ = ["Timings", "sync", "time_side_by_side"]


def sync(device: str) -> None:
    """Wait for the device (``torch.cuda.synchronize`` on CUDA; nothing on CPU)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@dataclass
class Timings:
    """Seconds per repeat for each method.

    Examples
    --------
    >>> t = Timings({"a": [1.0, 2.0, 3.0], "b": [2.0, 4.0, 6.0]})
    >>> t.median("b"), t.ratio("b", "a")
    (4.0, 2.0)
    """

    samples: dict[str, list[float]] = field(default_factory=dict)

    def median(self, name: str) -> float:
        """Median seconds of ``name``."""
        return statistics.median(self.samples[name])

    def ratio(self, name: str, reference: str) -> float:
        """Median over repeats of ``name / reference`` within each repeat."""
        pairs = [a / b for a, b in zip(self.samples[name], self.samples[reference], strict=True)]
        return statistics.median(pairs)


def time_side_by_side(
    methods: Mapping[str, Callable[[], object]],
    repeats: int,
    warmup: int = 1,
    device: str = "cpu",
    setup: Callable[[], None] | None = None,
    clock: Callable[[], float] | None = None,
) -> Timings:
    """Time each method ``repeats`` times, interleaved, after ``warmup`` untimed rounds.

    Parameters
    ----------
    methods:
        Name -> zero-argument callable.
    repeats, warmup:
        Timed and untimed rounds.
    device:
        Synchronised before and after each call when CUDA.
    setup:
        Called (untimed) before every call, e.g. to restore weights a method changed.
    clock:
        Defaults to :func:`time.process_time` on CPU and :func:`time.perf_counter` on CUDA.

    Examples
    --------
    >>> t = time_side_by_side({"noop": lambda: None}, repeats=3)
    >>> len(t.samples["noop"])
    3
    """
    if clock is None:
        clock = time.perf_counter if device.startswith("cuda") else time.process_time
    names = list(methods)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            if setup is not None:
                setup()
            sync(device)
            start = clock()
            methods[name]()
            sync(device)
            elapsed = clock() - start
            if r >= warmup:
                out[name].append(elapsed)
    return Timings(out)
