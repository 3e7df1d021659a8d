"""The gather methods compared by the benchmarks: the floor pass, ours and the naive anchor.

Shared by :mod:`benchmarks.bench_gather` (time) and :mod:`benchmarks.memory` (the peak-RSS
child process), which both import from here and not from each other.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from torch_dash_optim import DASHWrapper

from .models import Case
from .naive import naive_dash

__all__ = ["METHODS", "floor_pass", "gather_methods"]

#: The methods, in the order the tables list them.
METHODS: tuple[str, ...] = ("floor", "ours", "naive")


def floor_pass(case: Case) -> None:
    """One forward and backward pass per batch, in eval mode, accumulating into ``.grad``."""
    model = case.model
    model.eval()
    for inputs, targets in case.loader:
        case.loss_fn(model(inputs), targets).backward()


def gather_methods(case: Case) -> tuple[dict[str, Callable[[], object]], Callable[[], None]]:
    """The three methods on ``case``, and a set-up that restores weights and clears grads.

    Examples
    --------
    >>> from benchmarks.models import make_case
    >>> methods, setup = gather_methods(make_case("mlp", quick=True))
    >>> sorted(methods)
    ['floor', 'naive', 'ours']
    """
    model = case.model
    snapshot = [p.detach().clone() for p in model.parameters()]
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), model=model, loss_fn=case.loss_fn)

    def setup() -> None:
        with torch.no_grad():
            for p, s in zip(model.parameters(), snapshot, strict=True):
                p.copy_(s)
                p.grad = None
        model.train()

    methods: dict[str, Callable[[], object]] = {
        "floor": lambda: floor_pass(case),
        "ours": lambda: opt.on_new_data(case.loader),
        "naive": lambda: naive_dash(model, case.loss_fn, case.loader, train_mode=False),
    }
    return methods, setup
