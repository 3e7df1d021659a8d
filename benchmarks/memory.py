"""Peak memory of a call, measured three honest ways.

``tracemalloc`` cannot see torch's CPU allocations (they bypass Python's allocator), so:

- :func:`allocator_peak` runs the call under :mod:`torch.profiler` with ``profile_memory=True``
  and replays every allocation and free of torch's CPU allocator in time order; the peak of
  that curve, relative to the start, is the peak of *live tensor bytes* the call added. It is
  deterministic (it does not depend on what else runs on the machine), but it resolves memory
  at the granularity of operators, not inside them.
- :func:`rss_peaks` runs the calls in a *fresh* Python subprocess (Linux only) and reports
  the growth of the process's peak resident set size (``VmHWM``, reset just before the call by
  writing ``5`` to ``/proc/self/clear_refs``) over the resident size the set-up left, with
  glibc's mmap threshold pinned (``MALLOC_MMAP_THRESHOLD_``) so that freed tensors go back to
  the system. It sees everything (allocator caches, fragmentation, library buffers) and is
  the coarser cross-check.
- :func:`cuda_peak` uses ``torch.cuda.max_memory_allocated`` on CUDA.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import torch

__all__ = ["allocator_peak", "cuda_peak", "rss_peaks"]


def allocator_peak(fn: Callable[[], object]) -> int:
    """Peak bytes of live torch CPU tensors that ``fn`` added over its start.

    Examples
    --------
    >>> def make():
    ...     a = torch.ones(1000, 1000)    # 4 MB, freed on return
    ...     return None
    >>> allocator_peak(make) >= 4_000_000
    True
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    live = peak = 0
    for event in events:
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return int(peak)


def cuda_peak(fn: Callable[[], object], device: str = "cuda") -> int:
    """Peak bytes ``fn`` allocated on a CUDA device over what was allocated at its start."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device) - start)


def rss_peaks(case: str, methods: list[str], quick: bool, timeout: float = 600.0) -> dict[str, int]:
    """Growth of peak RSS (bytes) of each method run once on ``case``, in one fresh process.

    The child is ``python -m benchmarks.memory CASE METHOD... [--quick]`` (see :func:`_child`):
    it runs every method once untimed (lazy initialisation), then, for each method, resets the
    peak, records the resident size, runs the method and reads the new peak.
    """
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    cmd = [sys.executable, "-m", "benchmarks.memory", case, *methods] + (["--quick"] if quick else [])
    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory child {cmd} failed:\n{done.stderr[-2000:]}")
    return {k: int(v) for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024  # kB
    raise RuntimeError(f"{key} not in /proc/self/status")


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _child(argv: list[str]) -> None:
    import argparse
    import gc

    from .methods import gather_methods
    from .models import make_case

    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory")
    parser.add_argument("case")
    parser.add_argument("methods", nargs="+")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # one thread: no per-thread scratch buffers in the figure
    case = make_case(args.case, quick=args.quick)
    methods, setup = gather_methods(case)
    for name in args.methods:  # warm-up: lazy initialisation is not the method's memory
        setup()
        methods[name]()
    growth = {}
    for name in args.methods:
        setup()
        gc.collect()
        _reset_peak_rss()
        base = _status_bytes("VmRSS")
        methods[name]()
        growth[name] = _status_bytes("VmHWM") - base
    print(json.dumps(growth))


if __name__ == "__main__":
    _child(sys.argv[1:])
