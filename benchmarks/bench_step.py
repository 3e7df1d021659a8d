"""Goal 4: the wrapper's ``step()`` against the bare optimizer's.

The same inner optimizer is stepped directly (*bare*) and through :class:`DASHWrapper`
(*wrapped*), alternately, with fixed random gradients, so both do identical work. A call is
``steps`` consecutive steps.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from torch_dash_optim import DASHWrapper

from .config import Config
from .models import make_mlp, make_resnet18
from .results import Result, Run
from .timing import time_side_by_side

__all__ = ["OPTIMIZERS", "run"]

STEP_GOAL = 1.02

#: Optimizers compared, by name.
OPTIMIZERS: dict[str, Callable[[list[nn.Parameter]], torch.optim.Optimizer]] = {
    "SGD(momentum, foreach)": lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9, foreach=True),
    "Adam(foreach)": lambda ps: torch.optim.Adam(ps, lr=1e-5, foreach=True),
}

#: Short names of :data:`OPTIMIZERS`, for result keys.
SHORT: dict[str, str] = {"SGD(momentum, foreach)": "sgd", "Adam(foreach)": "adam"}


def _models(quick: bool) -> dict[str, nn.Module]:
    if quick:
        return {"mlp": make_mlp(32, 3)}
    return {"mlp": make_mlp(1024, 3), "resnet18": make_resnet18()}


def run(cfg: Config, out: Run) -> None:
    """Time bare and wrapped steps for every model and optimizer."""
    steps = 3 if cfg.quick else 40
    for model_name, model in _models(cfg.quick).items():
        model = model.to(cfg.device)
        for p in model.parameters():
            p.grad = torch.randn_like(p) * 1e-3
        mparams = sum(p.numel() for p in model.parameters()) / 1e6
        for opt_name, make in OPTIMIZERS.items():
            inner = make(list(model.parameters()))
            wrapper = DASHWrapper(inner, model=model, loss_fn=nn.CrossEntropyLoss())

            def bare(inner: torch.optim.Optimizer = inner) -> None:
                for _ in range(steps):
                    inner.step()

            def wrapped(wrapper: DASHWrapper = wrapper) -> None:
                for _ in range(steps):
                    wrapper.step()

            t = time_side_by_side({"bare": bare, "wrapped": wrapped}, cfg.repeats * 2, cfg.warmup, cfg.device)
            ratio = t.ratio("wrapped", "bare")
            label = f"{model_name} ({mparams:.2f}M params), {opt_name}"
            overhead_us = (t.median("wrapped") - t.median("bare")) / steps * 1e6
            key = f"step/{model_name}/{SHORT[opt_name]}"
            out.add(Result("step", f"{label}: bare step", t.median("bare") / steps * 1e3, "ms", key=f"{key}/bare_ms"))
            out.add(
                Result(
                    "step",
                    f"{label}: wrapped / bare",
                    ratio,
                    "x",
                    f"<= {STEP_GOAL}",
                    ratio <= STEP_GOAL,
                    f"median overhead {overhead_us:+.1f} us per step",
                    key=f"{key}/ratio",
                )
            )
