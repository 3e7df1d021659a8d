"""Goal 5: ``on_new_data`` time against data size and against parameter count.

Both sweeps use the MLP. The data sweep doubles the number of batches at a fixed model; the
parameter sweep widens the hidden layers at a fixed loader. Each point is the median of the
repeats; a least-squares line ``t = a + b x`` is fitted and its slope ``b``, intercept ``a``
and :math:`R^2` reported, next to the same fit of the floor pass (DASH's slope should match
the floor's: its only per-sample and per-parameter work is that pass).
"""

from __future__ import annotations

import torch

from torch_dash_optim import DASHWrapper

from .bench_gather import floor_pass
from .config import Config
from .models import make_case
from .results import Result, Run
from .timing import time_side_by_side

__all__ = ["linear_fit", "run"]

R2_GOAL = 0.98


def linear_fit(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least-squares ``y = a + b x``; returns ``(a, b, r2)``.

    Examples
    --------
    >>> a, b, r2 = linear_fit([1.0, 2.0, 3.0], [3.0, 5.0, 7.0])
    >>> round(a, 6), round(b, 6), round(r2, 6)
    (1.0, 2.0, 1.0)
    """
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    b = sxy / sxx
    a = my - b * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - a - b * x) ** 2 for x, y in zip(xs, ys, strict=True))
    return a, b, 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0


def _point(cfg: Config, batches: int | None, width: int | None) -> tuple[float, float, float, int]:
    case = make_case("mlp", quick=cfg.quick, device=cfg.device, batches=batches, width=width)
    model = case.model
    snapshot = [p.detach().clone() for p in model.parameters()]
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=case.loss_fn)

    def setup() -> None:
        with torch.no_grad():
            torch._foreach_copy_(list(model.parameters()), snapshot)
        model.zero_grad(set_to_none=True)

    t = time_side_by_side(
        {"floor": lambda: floor_pass(case), "ours": lambda: opt.on_new_data(case.loader)},
        cfg.repeats,
        cfg.warmup,
        cfg.device,
        setup,
    )
    return t.median("ours"), t.median("floor"), t.ratio("ours", "floor"), case.num_params


def _sweep(
    out: Run,
    key: str,
    what: str,
    unit: str,
    xs: list[float],
    ours: list[float],
    floor: list[float],
    ratios: list[float],
) -> None:
    a, b, r2 = linear_fit(xs, ours)
    fa, fb, fr2 = linear_fit(xs, floor)
    rows = zip(xs, ours, ratios, strict=True)
    points = ", ".join(f"{x:.4g}: {y * 1e3:.0f} ms ({r:.2f}x floor)" for x, y, r in rows)
    out.add(
        Result(
            "scaling",
            f"on_new_data vs {what}: slope",
            b * 1e3,
            f"ms per {unit}",
            note=f"intercept {a * 1e3:.1f} ms; floor slope {fb * 1e3:.3g} ms per {unit} (R2 {fr2:.3f})",
            key=f"scaling/{key}/slope",
        )
    )
    out.add(
        Result(
            "scaling",
            f"on_new_data vs {what}: R2 of the linear fit",
            r2,
            "",
            f">= {R2_GOAL}",
            r2 >= R2_GOAL,
            points,
            key=f"scaling/{key}/r2",
        )
    )
    out.add(
        Result("scaling", f"on_new_data vs {what}: slope / floor slope", b / fb, "x", key=f"scaling/{key}/slope_ratio")
    )


def run(cfg: Config, out: Run) -> None:
    """Sweep data size and parameter count."""
    batch_counts = [1, 2, 3] if cfg.quick else [2, 4, 8, 16]
    rows = [_point(cfg, n, None) for n in batch_counts]
    samples = [n * (16 if cfg.quick else 128) for n in batch_counts]
    _sweep(
        out,
        "data",
        "data size",
        "1000 samples",
        [s / 1000 for s in samples],
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
    )
    widths = [16, 32, 64] if cfg.quick else [512, 1024, 1536, 2048]
    rows = [_point(cfg, None if cfg.quick else 8, w) for w in widths]  # 8 batches of 128 per point
    _sweep(
        out,
        "params",
        "parameter count",
        "M params",
        [r[3] / 1e6 for r in rows],
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
    )
