"""Goals 1 and 2: ``on_new_data`` against the floor pass and against the naive anchor.

The *floor* is a plain forward and backward pass over the same loader, in the same mode (eval,
DASH's default), accumulating into ``.grad``: no implementation of DASH can skip it.
"""

from __future__ import annotations

import torch

from torch_dash_optim import DASHWrapper
from torch_dash_optim import functional as F
from torch_dash_optim.gather import _check_finite

from .config import Config
from .memory import allocator_peak, cuda_peak, rss_peaks
from .methods import METHODS, floor_pass, gather_methods
from .models import CASES, Case, make_case
from .results import Result, Run
from .timing import time_side_by_side

__all__ = ["floor_pass", "gather_methods", "run"]

TIME_GOAL = 1.05
MEMORY_GOAL = 1.0


def _time_case(case: Case, cfg: Config, run: Run) -> float:
    methods, setup = gather_methods(case)
    # Two pairs, each interleaved on its own, so that one method's after-effects on the caches
    # and the allocator do not fall on only one side of a ratio.
    goal = time_side_by_side({k: methods[k] for k in ("floor", "ours")}, cfg.repeats, cfg.warmup, cfg.device, setup)
    anchor = time_side_by_side({k: methods[k] for k in ("ours", "naive")}, cfg.repeats, 0, cfg.device, setup)
    setup()
    ratio = goal.ratio("ours", "floor")
    naive = anchor.ratio("naive", "ours")
    label = f"{case.name} ({case.num_params / 1e6:.2f}M params, {len(case.loader)} batches)"
    run.add(Result("gather", f"{label}: floor pass", goal.median("floor"), "s", key=f"gather/{case.name}/floor_s"))
    run.add(
        Result(
            "gather",
            f"{label}: on_new_data / floor",
            ratio,
            "x",
            f"<= {TIME_GOAL}",
            ratio <= TIME_GOAL,
            key=f"gather/{case.name}/ratio",
        )
    )
    run.add(Result("gather", f"{label}: naive / on_new_data", naive, "x", key=f"gather/{case.name}/naive_over_ours"))
    run.add(
        Result(
            "gather",
            f"{label}: naive / floor",
            naive * ratio,
            "x",
            note="product of the two paired ratios",
            key=f"gather/{case.name}/naive_over_floor",
        )
    )
    return goal.median("floor")


def _fixed_costs(case: Case, cfg: Config, run: Run, floor_s: float) -> None:
    """Time what ``on_new_data`` does once after the loop, on the case's parameters."""
    opt = DASHWrapper(torch.optim.SGD(case.model.parameters(), lr=0.1), model=case.model, loss_fn=case.loss_fn)
    targets = opt._select().targets
    params = [t.param for t in targets]
    dirs = [torch.randn_like(p) for p in params]
    dims = [t.dims for t in targets]
    factors = F.dash_factors_many(params, dirs, dims, 0.3)
    snapshot = [p.detach().clone() for p in params]

    def restore() -> None:
        with torch.no_grad():
            torch._foreach_copy_(params, snapshot)

    steps = {
        "select parameters": opt._select,
        "final EMA scaling": lambda: torch._foreach_mul_(dirs, 1.0),
        "finiteness check": lambda: _check_finite(dirs, None),
        "factors": lambda: F.dash_factors_many(params, dirs, dims, 0.3),
        "shrink (foreach mul)": lambda: F.shrink_(params, factors),
    }
    t = time_side_by_side(steps, cfg.repeats, cfg.warmup, cfg.device, restore)
    restore()
    total = sum(t.median(k) for k in steps)
    parts = ", ".join(f"{k} {t.median(k) * 1e3:.2f}" for k in steps)
    run.add(
        Result(
            "gather",
            f"{case.name}: fixed cost after the loop",
            total * 1e3,
            "ms",
            note=f"{total / floor_s * 100:.1f}% of this floor pass; ms: {parts}",
            key=f"gather/{case.name}/fixed_ms",
        )
    )


def _memory_case(case: Case, cfg: Config, run: Run, rss: bool) -> None:
    methods, setup = gather_methods(case)
    pb = case.param_bytes
    peaks: dict[str, int] = {}
    for name, fn in methods.items():
        setup()
        peaks[name] = cuda_peak(fn, cfg.device) if cfg.device.startswith("cuda") else allocator_peak(fn)
    setup()
    how = "torch.cuda.max_memory_allocated" if cfg.device.startswith("cuda") else "torch.profiler allocator peak"
    for name in ("ours", "naive"):
        extra = (peaks[name] - peaks["floor"]) / pb
        goal, holds = (f"<= {MEMORY_GOAL}", extra <= MEMORY_GOAL) if name == "ours" else ("", None)
        run.add(
            Result(
                "memory",
                f"{case.name}: {name} extra peak over floor",
                extra,
                "x param bytes",
                goal,
                holds,
                f"{how}; floor peak {peaks['floor'] / pb:.2f}x, param bytes {pb / 1e6:.1f} MB",
                key=f"memory/{case.name}/{name}",
            )
        )
    if rss:
        growth = rss_peaks(case.name, list(METHODS), cfg.quick)
        for name in ("ours", "naive"):
            extra = (growth[name] - growth["floor"]) / pb
            run.add(
                Result(
                    "memory",
                    f"{case.name}: {name} extra peak RSS over floor",
                    extra,
                    "x param bytes",
                    "",
                    None,
                    f"fresh subprocess, VmHWM; floor growth {growth['floor'] / pb:.2f}x",
                    key=f"memory/{case.name}/{name}_rss",
                )
            )


def run(cfg: Config, out: Run, cases: tuple[str, ...] = CASES, rss: bool = True) -> dict[str, float]:
    """Time and measure every case; return the floor seconds per case."""
    floors = {}
    for name in cases:
        case = make_case(name, quick=cfg.quick, device=cfg.device)
        floors[name] = _time_case(case, cfg, out)
        _fixed_costs(case, cfg, out, floors[name])
        _memory_case(case, cfg, out, rss=rss and not cfg.device.startswith("cuda"))
    return floors
