"""state="keep" | "scale" | "reset" on SGD, Adam, AdamW, RMSprop, Adagrad and SAM's base."""

from __future__ import annotations

import copy

import pytest
import torch
from _models import SmallCNN, make_data, train_steps
from torch import nn

from torch_dash_optim import SAM, DASHWrapper
from torch_dash_optim import functional as F
from torch_dash_optim.state_policy import FIRST_MOMENT_KEYS, SECOND_MOMENT_KEYS, plan_state

OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-3, amsgrad=True),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-3),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=1e-3, momentum=0.9, centered=True),
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=1e-2),
    "sam": lambda p: SAM(p, torch.optim.Adam, rho=0.05, lr=1e-3),
}


def _run(kind: str, policy: str):
    model = SmallCNN()
    opt = DASHWrapper(OPTIMIZERS[kind](model.parameters()), model=model, loss_fn=nn.CrossEntropyLoss(), state=policy)
    data = make_data()
    train_steps(model, opt, data)
    before_w = {n: p.detach().clone() for n, p in model.named_parameters()}
    before_state = copy.deepcopy({n: opt.state[p] for n, p in model.named_parameters() if p in opt.state})
    report = opt.on_new_data(data)
    return model, opt, data, report, before_w, before_state


def _factor(before: torch.Tensor, after: torch.Tensor, dims) -> torch.Tensor:
    """Recover each unit's factor from the weights before and after."""
    num = (after * before).sum(dims, keepdim=True)
    den = (before * before).sum(dims, keepdim=True)
    return num / den


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_keep_leaves_the_state_alone(kind):
    model, opt, _, report, _, before_state = _run(kind, "keep")
    for name, p in model.named_parameters():
        for key, value in before_state.get(name, {}).items():
            after = opt.state[p][key]
            assert (torch.equal(value, after) if torch.is_tensor(value) else value == after), (name, key)
    assert report.unknown_state == {}


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_scale_multiplies_first_moments_by_f_and_second_by_f_squared(kind):
    model, opt, _, report, before_w, before_state = _run(kind, "scale")
    shrunk = {p.name for p in report.params}
    scaled_keys = set()
    for name, p in model.named_parameters():
        state = before_state.get(name, {})
        if name not in shrunk:
            for key, value in state.items():  # untouched parameters keep their state
                after = opt.state[p][key]
                assert torch.equal(value, after) if torch.is_tensor(value) else value == after
            continue
        f = _factor(before_w[name], p.detach(), F.unit_dims(p.ndim) if p.ndim > 1 else (0,))
        for key, value in state.items():
            after = opt.state[p][key]
            if key in FIRST_MOMENT_KEYS:
                torch.testing.assert_close(after, value * f, rtol=1e-4, atol=1e-7)
                scaled_keys.add(key)
            elif key in SECOND_MOMENT_KEYS:
                torch.testing.assert_close(after, value * f * f, rtol=1e-4, atol=1e-9)
                scaled_keys.add(key)
            else:
                assert torch.equal(value, after) if torch.is_tensor(value) else value == after
    expected = {
        "sgd": {"momentum_buffer"},
        "adam": {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"},
        "adamw": {"exp_avg", "exp_avg_sq"},
        "rmsprop": {"momentum_buffer", "square_avg", "grad_avg"},
        "adagrad": {"sum"},
        "sam": {"exp_avg", "exp_avg_sq"},
    }[kind]
    assert scaled_keys == expected
    assert report.unknown_state == {}


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_reset_drops_the_state_of_shrunk_parameters_and_training_goes_on(kind):
    model, opt, data, report, _, before_state = _run(kind, "reset")
    shrunk = {p.name for p in report.params}
    for name, p in model.named_parameters():
        if name in shrunk:
            assert p not in opt.state or not opt.state[p], name
        elif name in before_state:
            assert opt.state[p].keys() == before_state[name].keys()
    train_steps(model, opt, data, steps=1)  # the base re-initialises its state
    assert all(opt.state[p] for p in model.parameters())


def test_scale_names_unknown_state_keys_and_leaves_them_alone():
    model = nn.Linear(3, 2)
    opt = DASHWrapper(torch.optim.ASGD(model.parameters(), lr=0.01, t0=0), model=model,
                      loss_fn=nn.MSELoss(), state="scale")
    data = [(torch.randn(4, 3), torch.randn(4, 2))]
    train_steps_mse(model, opt, data)
    ax = opt.state[model.weight]["ax"].clone()
    report = opt.on_new_data(data)
    assert report.unknown_state == {"weight": ["ax"], "bias": ["ax"]}
    assert torch.equal(opt.state[model.weight]["ax"], ax)
    assert "state keys not scaled (unknown):" in str(report) and "weight: ax" in str(report)


def train_steps_mse(model, opt, data):
    for x, y in data:
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def test_plan_state_validates_nothing_for_keep_and_skips_empty_state():
    p = nn.Parameter(torch.ones(2, 2))
    assert plan_state("keep", {p: {"exp_avg": torch.ones(2, 2)}}, [("w", p, torch.ones(2, 1))]).tensors == []
    assert plan_state("scale", {}, [("w", p, torch.ones(2, 1))]).tensors == []
    state = {p: {"step": 1}}
    plan = plan_state("reset", state, [("w", p, torch.ones(2, 1))])
    assert [q for _, q in plan.drop] == [p] and p in state
    plan.apply_drops()
    assert state == {}


def test_unknown_policy_is_refused():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="unknown state 'zero'; use one of 'keep', 'scale', 'reset'"):
        DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, state="zero")
