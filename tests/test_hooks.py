"""Gradient hooks, hooks that step, grads outside the tracked set, re-entry and step hooks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from torch_dash_optim import SAM, DASHWrapper

LAMBD, ALPHA, CLAMP = 0.0, 0.3, 0.02  # lambd=0: every positive cosine is compared


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 3))


def _data(n: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)) for _ in range(n)]


def _reference_factors(model: nn.Module, data: list[Any]) -> dict[str, torch.Tensor]:
    """EMA of the per-batch (hooked) gradients, one clean backward per batch, factors per row."""
    params = dict(model.named_parameters())
    ema = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in params.items()}
    for x, y in data:
        for p in params.values():
            p.grad = None
        nn.functional.cross_entropy(model(x), y).backward()
        for n, p in params.items():
            ema[n] = (1 - ALPHA) * ema[n] + ALPHA * (-p.grad.double())
    for p in params.values():
        p.grad = None
    out = {}
    for n, p in params.items():
        w, d = p.detach().double(), ema[n]
        if w.ndim == 1:
            w, d = w.reshape(1, -1), d.reshape(1, -1)
        cos = (w * d).sum(1) / (w.norm(dim=1).clamp_min(1e-8) * d.norm(dim=1).clamp_min(1e-8))
        out[n] = cos.clamp(LAMBD, 1.0)
    return out


def _clamp_param_hooks(model: nn.Module) -> list[Any]:
    return [p.register_hook(lambda g: g.clamp(-CLAMP, CLAMP)) for p in model.parameters()]


def _clamp_module_hooks(model: nn.Module) -> list[Any]:
    return [
        m.register_full_backward_pre_hook(lambda mod, go: (go[0].clamp(-CLAMP, CLAMP),))
        for m in model
        if isinstance(m, nn.Linear)
    ]


def _clamp_global_hooks(model: nn.Module) -> list[Any]:
    return [
        nn.modules.module.register_module_full_backward_pre_hook(
            lambda mod, go: (go[0].clamp(-CLAMP, CLAMP),) if isinstance(mod, nn.Linear) else None
        )
    ]


@pytest.mark.parametrize(
    "install", [_clamp_param_hooks, _clamp_module_hooks, _clamp_global_hooks], ids=["tensor", "module", "global"]
)
def test_factors_under_a_nonlinear_gradient_hook_are_those_of_the_per_batch_ema(install: Callable) -> None:
    model, data = _model(), _data()
    handles = install(model)
    try:
        expected = _reference_factors(model, data)
        opt = DASHWrapper(
            torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss(), lambd=LAMBD
        )
        report = opt.on_new_data(data)
    finally:
        for h in handles:
            h.remove()
    assert set(report.factors) == set(expected)
    inside = torch.cat([f[(f > 0.01) & (f < 0.99)] for f in expected.values()])
    assert inside.numel() >= 5  # the comparison is not decided by the clamp alone
    for name, f in report.factors.items():
        torch.testing.assert_close(f.flatten().double(), expected[name], atol=1e-5, rtol=0)


def test_post_accumulate_grad_hooks_are_refused_and_nothing_runs() -> None:
    model, data = _model(), _data(3)
    inner = {p: torch.optim.SGD([p], lr=0.5) for p in model.parameters()}  # optimizer step in backward
    steps = {"n": 0}

    def step_in_backward(p: torch.Tensor) -> None:
        steps["n"] += 1
        inner[p].step()
        inner[p].zero_grad()

    handles = [p.register_post_accumulate_grad_hook(step_in_backward) for p in model.parameters()]
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.raises(ValueError, match="0.weight has a post-accumulate-grad hook.*handle.remove"):
        opt.on_new_data(data)
    assert steps["n"] == 0 and opt.num_dash_calls == 0
    assert all(torch.equal(p, before[n]) and p.grad is None for n, p in model.named_parameters())
    for h in handles:
        h.remove()
    assert opt.on_new_data(data).call == 1


def test_no_grad_leaks_outside_the_optimizer_or_into_the_loss_module() -> None:
    torch.manual_seed(0)
    backbone, head = nn.Linear(6, 6), nn.Linear(6, 3)

    class WeightedLoss(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.temperature = nn.Parameter(torch.ones(()))

        def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return nn.functional.cross_entropy(out * self.temperature, y)

    criterion = WeightedLoss()
    data = _data(3)
    old_grad = torch.full((), 7.0)
    criterion.temperature.grad = old_grad
    # model=None: the backbone is trainable but outside the optimizer, so DASH cannot know it.
    opt = DASHWrapper(
        torch.optim.SGD(head.parameters(), lr=0.1), batch_loss=lambda m, b: criterion(head(backbone(b[0])), b[1])
    )
    opt.on_new_data(data)
    assert backbone.weight.grad is None and backbone.bias.grad is None
    assert criterion.temperature.grad is old_grad and float(old_grad) == 7.0
    # With a model, the loss module's parameter gets no grad either.
    model = nn.Sequential(backbone, head)
    criterion.temperature.grad = None
    DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=criterion).on_new_data(data)
    assert criterion.temperature.grad is None


@pytest.mark.parametrize("call", ["step", "zero_grad", "on_new_data"])
def test_step_zero_grad_or_on_new_data_from_inside_the_loss_is_refused(call: str) -> None:
    model, data = _model(), _data(3)
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), model=model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        value = nn.functional.cross_entropy(out, y)
        if call == "step":
            opt.step()
        elif call == "zero_grad":  # would clear the direction gathered in .grad so far
            opt.zero_grad()
        else:
            opt.on_new_data(data, loss_fn=nn.CrossEntropyLoss())
        return value

    with pytest.raises(RuntimeError, match=f"{call}.* was called during on_new_data's gradient pass"):
        opt.on_new_data(data, loss_fn=loss)
    assert all(torch.equal(p, before[n]) and p.grad is None for n, p in model.named_parameters())
    assert opt.num_dash_calls == 0 and not opt.state
    opt.on_new_data(data, loss_fn=nn.CrossEntropyLoss())  # the guard is lifted afterwards
    opt.step()


def _count_global_hooks() -> tuple[dict[str, int], list[Any]]:
    counts = {"pre": 0, "post": 0}
    handles = [
        register_optimizer_step_pre_hook(lambda o, a, k: counts.__setitem__("pre", counts["pre"] + 1)),
        register_optimizer_step_post_hook(lambda o, a, k: counts.__setitem__("post", counts["post"] + 1)),
    ]
    return counts, handles


def test_global_step_hooks_fire_once_per_wrapped_step() -> None:
    model, data = _model(), _data(1)
    x, y = data[0]
    wrapped = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model)
    sam = DASHWrapper(SAM(model.parameters(), torch.optim.SGD, lr=0.1), model=model)

    def closure() -> torch.Tensor:
        sam.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    own = {"n": 0}
    wrapped.register_step_pre_hook(lambda o, a, k: own.__setitem__("n", own["n"] + 1))
    counts, handles = _count_global_hooks()
    try:
        closure()
        wrapped.step()
        assert counts == {"pre": 1, "post": 1} and own["n"] == 1  # the wrapper's own hooks still fire
        sam.step(closure)
        assert counts == {"pre": 2, "post": 2}
    finally:
        for h in handles:
            h.remove()


def _record_step_hooks(opt: torch.optim.Optimizer) -> tuple[list[tuple[str, Any]], list[Any]]:
    calls: list[tuple[str, Any]] = []
    handles = [
        register_optimizer_step_pre_hook(lambda o, a, k: calls.append(("global pre", o))),
        register_optimizer_step_post_hook(lambda o, a, k: calls.append(("global post", o))),
        opt.register_step_pre_hook(lambda o, a, k: calls.append(("local pre", o))),
        opt.register_step_post_hook(lambda o, a, k: calls.append(("local post", o))),
    ]
    return calls, handles


@pytest.mark.parametrize("kind", ["plain", "sam"])
def test_step_hooks_fire_in_torchs_order_once_with_the_wrapper(kind: str) -> None:
    model, data = _model(), _data(1)
    x, y = data[0]
    bare = torch.optim.SGD(_model().parameters(), lr=0.1)
    if kind == "plain":
        opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model)
    else:
        opt = DASHWrapper(SAM(model.parameters(), torch.optim.SGD, lr=0.1), model=model)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    expected = ["global pre", "local pre", "local post", "global post"]
    inner = {"n": 0}
    for o in (bare, opt):
        calls, handles = _record_step_hooks(o)
        if o is opt:  # hooks registered on the inner optimizer itself still fire, inside
            handles.append(opt.optimizer.register_step_pre_hook(lambda o, a, k: inner.__setitem__("n", 1)))
        try:
            if o is bare:
                for p in bare.param_groups[0]["params"]:
                    p.grad = torch.zeros_like(p)
                o.step()
            else:
                o.step(closure) if kind == "sam" else (closure(), o.step())
        finally:
            for h in handles:
                h.remove()
        assert [c for c, _ in calls] == expected
        assert all(who is o for _, who in calls)
        if o is opt:
            assert inner["n"] == 1


def test_a_global_hook_registered_inside_a_step_is_kept() -> None:
    model, data = _model(), _data(1)
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model)
    late: list[Any] = []
    seen: list[Any] = []

    def register_another(o: Any, a: Any, k: Any) -> None:
        if not late:
            late.append(register_optimizer_step_pre_hook(lambda o, a, k: seen.append(o)))

    first = register_optimizer_step_pre_hook(lambda o, a, k: None)
    opt.optimizer.register_step_pre_hook(register_another)
    try:
        x, y = data[0]
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        opt.step()
        assert seen == [opt]
    finally:
        first.remove()
        for h in late:
            h.remove()
