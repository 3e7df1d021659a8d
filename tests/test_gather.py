"""The gradient pass: the EMA, in-place accumulation, and nothing left behind."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torch_dash_optim import NonFiniteGradientError, gather_direction
from torch_dash_optim.gather import move_to_device


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Linear(4, 2))
    data = [(torch.randn(5, 3), torch.randint(0, 2, (5,))) for _ in range(4)]
    return model, data


def _loss(model):
    return lambda b: nn.functional.cross_entropy(model(b[0]), b[1])


def _batch_grads(model, data, params):
    out = []
    for x, y in data:
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        out.append([p.grad.clone() for p in params])
    model.zero_grad()
    return out


@pytest.mark.parametrize("alpha", [0.1, 0.3, 1.0])
def test_ema_of_negative_gradients_from_zero_without_bias_correction(alpha):
    model, data = _setup()
    params = [model[0].weight, model[3].weight]
    model.eval()
    grads = _batch_grads(model, data, params)
    expected = [torch.zeros_like(p) for p in params]
    for gs in grads:
        expected = [(1 - alpha) * e + alpha * (-g) for e, g in zip(expected, gs)]
    res = gather_direction(params, data, _loss(model), alpha=alpha, model=model)
    assert res.num_batches == 4
    for d, e in zip(res.directions, expected):
        torch.testing.assert_close(d, e, rtol=1e-5, atol=1e-7)


def test_mean_average_is_the_plain_mean():
    model, data = _setup()
    params = list(model.parameters())
    model.eval()
    grads = _batch_grads(model, data, params)
    res = gather_direction(params, data, _loss(model), average="mean", model=model)
    for i, d in enumerate(res.directions):
        torch.testing.assert_close(d, -sum(g[i] for g in grads) / len(grads), rtol=1e-5, atol=1e-7)


def test_grads_modes_and_buffers_come_back_exactly():
    model, data = _setup()
    model.train()
    model[1].eval()
    x, y = data[0]
    nn.functional.cross_entropy(model(x), y).backward()
    model[3].bias.grad = None  # a None grad stays None
    grads = {n: (p.grad, None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    modes = {n: m.training for n, m in model.named_modules()}
    params = list(model.parameters())
    gather_direction(params, data, _loss(model), model=model, train_mode=True)
    for n, p in model.named_parameters():
        obj, val = grads[n]
        assert p.grad is obj and (val is None or torch.equal(p.grad, val)), n
    for n, b in model.named_buffers():
        assert torch.equal(b, buffers[n]), n
    assert {n: m.training for n, m in model.named_modules()} == modes


def test_the_pass_runs_in_eval_mode_by_default_and_under_no_grad():
    model, data = _setup()
    seen = []
    model[2].register_forward_hook(lambda m, i, o: seen.append(m.training))
    with torch.no_grad():
        res = gather_direction(list(model.parameters()), data, _loss(model), model=model)
    assert seen == [False] * 4 and all(d is not None for d in res.directions)
    assert model.training


def test_unreached_parameters_have_no_direction():
    model, data = _setup()
    extra = nn.Parameter(torch.ones(3))
    res = gather_direction([model[0].weight, extra], data, _loss(model), model=model)
    assert res.directions[0] is not None and res.directions[1] is None and extra.grad is None


def test_batches_are_moved_and_nested_structures_kept():
    from collections import namedtuple

    Pair = namedtuple("Pair", "x y")
    batch = {"a": [torch.ones(1), (torch.zeros(1), 3)], "b": Pair(torch.ones(2), "s")}
    moved = move_to_device(batch, torch.device("cpu"))
    assert isinstance(moved["b"], Pair) and moved["b"].y == "s" and moved["a"][1][1] == 3


def test_empty_loader_non_scalar_and_detached_losses_are_refused():
    model, data = _setup()
    params = list(model.parameters())
    with pytest.raises(ValueError, match="the loader yielded no batch"):
        gather_direction(params, [], _loss(model), model=model)
    with pytest.raises(ValueError, match=r"batch 0: the loss must be a scalar; got shape \(5,\)"):
        gather_direction(params, data, lambda b: nn.functional.cross_entropy(model(b[0]), b[1], reduction="none"),
                         model=model)
    with pytest.raises(ValueError, match="batch 0: the loss does not depend on any trainable parameter"):
        gather_direction(params, data, lambda b: torch.tensor(1.0), model=model)
    with pytest.raises(TypeError, match="batch 0: the loss must be a Tensor; got float"):
        gather_direction(params, data, lambda b: 1.0, model=model)
    assert all(p.grad is None for p in params)


def test_non_finite_direction_is_refused_naming_the_parameters():
    model, data = _setup()
    bad = [(x.clone().fill_(float("inf")), y) for x, y in data]
    with pytest.raises(NonFiniteGradientError, match=r"for \d parameter\(s\) \(first"):
        gather_direction([model[0].weight, model[3].weight], bad, _loss(model), model=model, names=["first", "last"])
    assert model[0].weight.grad is None
