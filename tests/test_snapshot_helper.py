"""The failure-safety snapshot (tests/_snapshot.py) sees every kind of change it is meant to catch.

Each failure-safety test is only as strong as this helper: here each change that on_new_data
must never leave behind is made by hand, and the comparison must fail on it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from _snapshot import assert_unchanged, snapshot
from torch import nn


def _setup() -> tuple[nn.Module, torch.optim.Optimizer, nn.Parameter]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    outside = nn.Parameter(torch.randn(2))  # in the optimizer, not in the model
    opt = torch.optim.SGD([*model.parameters(), outside], lr=0.1, momentum=0.9)
    x = torch.randn(5, 3)
    (model(x).sum() + outside.sum()).backward()
    opt.step()
    (model(x).sum() + outside.sum()).backward()
    model[2].bias.grad = None
    model[1].eval()
    return model, opt, outside


def _replace_state(opt: torch.optim.Optimizer) -> None:
    state = next(iter(opt.state.values()))
    state["momentum_buffer"] = state["momentum_buffer"].clone()


def _drop_state(opt: torch.optim.Optimizer) -> None:
    opt.state.pop(next(iter(opt.state)))


CHANGES: list[tuple[str, Callable[[nn.Module, torch.optim.Optimizer, nn.Parameter], None]]] = [
    ("weight value", lambda m, o, x: m[0].weight.data.mul_(0.5)),
    ("grad value", lambda m, o, x: m[0].weight.grad.add_(1.0)),
    ("grad object (same values)", lambda m, o, x: setattr(m[0].weight, "grad", m[0].weight.grad.clone())),
    ("None grad set", lambda m, o, x: setattr(m[2].bias, "grad", torch.zeros_like(m[2].bias))),
    ("grad set to None", lambda m, o, x: setattr(m[0].bias, "grad", None)),
    ("buffer value", lambda m, o, x: m[1].running_mean.add_(1.0)),
    ("buffer object (same values)", lambda m, o, x: setattr(m[1], "running_var", m[1].running_var.clone())),
    ("submodule mode", lambda m, o, x: m[1].train()),
    ("top-level mode", lambda m, o, x: setattr(m, "training", False)),
    ("optimizer state value", lambda m, o, x: next(iter(o.state.values()))["momentum_buffer"].mul_(0.5)),
    ("optimizer state object (same values)", lambda m, o, x: _replace_state(o)),
    ("optimizer state dropped", lambda m, o, x: _drop_state(o)),
    ("hyperparameter", lambda m, o, x: o.param_groups[0].update(lr=0.2)),
    ("parameter outside the model: value", lambda m, o, x: x.data.add_(1.0)),
    ("parameter outside the model: grad", lambda m, o, x: setattr(x, "grad", None)),
]


def test_an_untouched_model_passes() -> None:
    model, opt, _ = _setup()
    before = snapshot(model, opt)
    model(torch.randn(5, 3))  # BatchNorm in eval mode: a forward changes nothing
    assert_unchanged(before, model, opt)


@pytest.mark.parametrize(("what", "change"), CHANGES, ids=[c[0] for c in CHANGES])
def test_each_change_is_caught(what: str, change: Callable[..., None]) -> None:
    model, opt, outside = _setup()
    before = snapshot(model, opt)
    change(model, opt, outside)
    with pytest.raises(AssertionError):
        assert_unchanged(before, model, opt)


def test_after_a_success_only_the_weights_may_change() -> None:
    model, opt, _ = _setup()
    before = snapshot(model, opt)
    with torch.no_grad():
        model[0].weight.mul_(0.5)
    assert_unchanged(before, model, opt, weights=False)
    model[1].train()
    with pytest.raises(AssertionError, match="modes"):
        assert_unchanged(before, model, opt, weights=False)
