"""Fused and foreach Adam/SGD on the device: the wrapper steps exactly as the bare optimizer, before and after DASH."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from _cuda_helpers import batches, cnn, wrapped
from torch import nn

pytestmark = pytest.mark.cuda

OPTIMIZERS: dict[str, Callable[[list[nn.Parameter]], torch.optim.Optimizer]] = {
    "sgd-foreach": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, foreach=True),
    "sgd-fused": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, fused=True),
    "adam-foreach": lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True),
    "adam-fused": lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True),
    "adamw-fused": lambda ps: torch.optim.AdamW(ps, lr=1e-3, fused=True),
}


def _grads(model: nn.Module, data) -> None:
    model.zero_grad()
    x, y = data
    nn.functional.cross_entropy(model(x), y).backward()


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_wrapped_steps_equal_bare_steps_around_a_shrink(name: str, device: torch.device) -> None:
    data = batches(device, n=6)
    bare_model, model = cnn(device), cnn(device)
    bare = OPTIMIZERS[name](list(bare_model.parameters()))
    opt = wrapped(model, OPTIMIZERS[name](list(model.parameters())))
    for batch in data[:3]:
        for m, o in ((bare_model, bare), (model, opt)):
            m.train()
            _grads(m, batch)
            o.step()
    assert all(torch.equal(p, q) for p, q in zip(bare_model.parameters(), model.parameters(), strict=True))

    report = opt.on_new_data(data)
    with torch.no_grad():  # the same shrink by hand on the bare model
        for n, p in bare_model.named_parameters():
            if n in report.factors:
                p.mul_(report.factors[n].to(p.dtype))
    assert all(torch.equal(p, q) for p, q in zip(bare_model.parameters(), model.parameters(), strict=True))
    for batch in data[3:]:  # state="keep": the state carries on unchanged
        for m, o in ((bare_model, bare), (model, opt)):
            m.train()
            _grads(m, batch)
            o.step()
    assert all(torch.equal(p, q) for p, q in zip(bare_model.parameters(), model.parameters(), strict=True))


@pytest.mark.parametrize("name", ["adam-foreach", "adam-fused"])
def test_state_scale_with_fused_and_foreach_adam(name: str, device: torch.device) -> None:
    data = batches(device)
    model = cnn(device)
    opt = wrapped(model, OPTIMIZERS[name](list(model.parameters())), state="scale")
    for batch in data:
        model.train()
        _grads(model, batch)
        opt.step()
    named = dict(model.named_parameters())
    before = {n: {k: v.clone() for k, v in opt.state[p].items()} for n, p in named.items()}
    report = opt.on_new_data(data)
    for n, f in report.factors.items():
        state = opt.state[named[n]]
        torch.testing.assert_close(state["exp_avg"], before[n]["exp_avg"] * f)
        torch.testing.assert_close(state["exp_avg_sq"], before[n]["exp_avg_sq"] * f * f)
    model.train()
    _grads(model, data[0])
    opt.step()  # the fused kernel accepts the scaled state
    assert all(torch.isfinite(p).all() for p in model.parameters())
