"""SAM and ASAM: the update rule, the step contract, checkpoints, and use inside DASHWrapper."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
from torch import nn

from torch_dash_optim import SAM, DASHWrapper


def _problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    x, y = torch.randn(8, 4, generator=g), torch.randn(8, 2, generator=g)
    return model, x, y


def _grads(model, x, y):
    model.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    return loss, [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("adaptive", [False, True])
def test_step_follows_the_sam_rule(adaptive):
    rho, lr = 0.5 if adaptive else 0.05, 0.1
    model, x, y = _problem()
    ref = copy.deepcopy(model)
    opt = SAM(model.parameters(), torch.optim.SGD, rho=rho, adaptive=adaptive, lr=lr)

    def closure():
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    loss = opt.step(closure)

    # Reference, by hand.
    loss_ref, g = _grads(ref, x, y)
    params = list(ref.parameters())
    with torch.no_grad():
        t = [p.abs() if adaptive else torch.ones_like(p) for p in params]
        norm = torch.sqrt(sum(((ti * gi) ** 2).sum() for ti, gi in zip(t, g)))
        eps = [rho * ti * ti * gi / (norm + 1e-12) for ti, gi in zip(t, g)]
        old = [p.clone() for p in params]
        for p, e in zip(params, eps):
            p.add_(e)
    _, g2 = _grads(ref, x, y)
    with torch.no_grad():
        for p, o, gi in zip(params, old, g2):
            p.copy_(o - lr * gi)
    assert torch.equal(loss.detach(), loss_ref.detach())  # the loss at the original weights
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_second_step_restores_the_weights_exactly():
    model, x, y = _problem()
    before = [p.clone() for p in model.parameters()]
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.3, lr=0.0)
    _grads(model, x, y)
    opt.first_step(zero_grad=True)
    assert not all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    _grads(model, x, y)
    opt.second_step()
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_step_without_closure_is_a_plain_base_step():
    model, x, y = _problem()
    ref = copy.deepcopy(model)
    opt = SAM(model.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9)
    base = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    for m, o in ((model, opt), (ref, base)):
        _grads(m, x, y)
        assert o.step() is None
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.equal(p, q)


def test_misuse_of_the_two_steps_is_refused():
    model, x, y = _problem()
    opt = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    with pytest.raises(RuntimeError, match="second_step was called without first_step"):
        opt.second_step()
    _grads(model, x, y)
    opt.first_step()
    with pytest.raises(RuntimeError, match="first_step was called twice"):
        opt.first_step()
    with pytest.raises(RuntimeError, match="between first_step and second_step, while the weights are perturbed"):
        opt.state_dict()
    with pytest.raises(RuntimeError, match="without a closure between first_step and second_step"):
        opt.step()
    opt.second_step()
    opt.state_dict()


def test_state_dict_carries_the_base_momentum_and_round_trips():
    model, x, y = _problem()
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.1, lr=0.1, momentum=0.9)

    def closure():
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    opt.step(closure)
    sd = opt.state_dict()
    assert all("momentum_buffer" in s for s in sd["state"].values()) and len(sd["state"]) == 4
    assert sd["param_groups"][0]["rho"] == 0.1 and sd["param_groups"][0]["adaptive"] is False
    model2 = copy.deepcopy(model)
    opt2 = SAM(model2.parameters(), torch.optim.SGD, rho=0.1, lr=0.1, momentum=0.9)
    opt2.load_state_dict(copy.deepcopy(sd))
    assert opt2.param_groups is opt2.base_optimizer.param_groups
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(opt.state[p]["momentum_buffer"], opt2.state[q]["momentum_buffer"])


def test_per_group_rho_and_add_param_group():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    opt = SAM([{"params": a.parameters(), "rho": 0.5}], torch.optim.SGD, rho=0.05, lr=0.1)
    opt.add_param_group({"params": b.parameters()})
    assert [g["rho"] for g in opt.param_groups] == [0.5, 0.05]
    assert opt.base_optimizer.param_groups[1]["adaptive"] is False


def test_bad_arguments_are_refused():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="rho=-1 must be a finite number >= 0"):
        SAM(model.parameters(), torch.optim.SGD, rho=-1, lr=0.1)
    with pytest.raises(TypeError, match="optimizer class such as torch.optim.SGD, not an instance"):
        SAM(model.parameters(), torch.optim.SGD(model.parameters(), lr=0.1), lr=0.1)
    with pytest.raises(TypeError, match="adaptive must be True or False"):
        SAM(model.parameters(), torch.optim.SGD, adaptive="yes", lr=0.1)


@pytest.mark.parametrize("rho", [np.float32(0.5), np.float64(0.1), np.int64(2)])
def test_numpy_rho_is_accepted_and_kept_as_a_float(rho):
    opt = SAM(nn.Linear(2, 2).parameters(), torch.optim.SGD, rho=rho, lr=0.1)
    opt.add_param_group({"params": [nn.Parameter(torch.ones(2))], "rho": rho})
    assert [type(g["rho"]) for g in opt.param_groups] == [float, float]
    assert [g["rho"] for g in opt.param_groups] == [float(rho)] * 2 == [opt.defaults["rho"]] * 2


@pytest.mark.parametrize("rho", [True, "0.05", None])
def test_a_rho_that_is_not_a_number_is_refused_naming_its_type(rho):
    with pytest.raises(TypeError, match=rf"rho must be a number in \[0, inf\); got {re.escape(repr(rho))} of type"):
        SAM(nn.Linear(2, 2).parameters(), torch.optim.SGD, rho=rho, lr=0.1)
    with pytest.raises(TypeError, match=r"param group 0: rho must be a number"):
        SAM([{"params": nn.Linear(2, 2).parameters(), "rho": rho}], torch.optim.SGD, lr=0.1)


def test_inside_dash_wrapper_in_both_styles():
    model_a, x, y = _problem()
    model_b, model_c = copy.deepcopy(model_a), copy.deepcopy(model_a)
    plain = SAM(model_a.parameters(), torch.optim.SGD, rho=0.1, lr=0.1, momentum=0.9)
    closure_style = DASHWrapper(SAM(model_b.parameters(), torch.optim.SGD, rho=0.1, lr=0.1, momentum=0.9),
                                model=model_b, loss_fn=nn.MSELoss())
    two_step = DASHWrapper(SAM(model_c.parameters(), torch.optim.SGD, rho=0.1, lr=0.1, momentum=0.9),
                           model=model_c, loss_fn=nn.MSELoss())
    for _ in range(3):
        for m, o in ((model_a, plain), (model_b, closure_style)):
            def closure(m=m, o=o):
                o.zero_grad()
                loss = nn.functional.mse_loss(m(x), y)
                loss.backward()
                return loss

            assert o.step(closure).ndim == 0
        _grads(model_c, x, y)
        two_step.first_step(zero_grad=True)
        _grads(model_c, x, y)
        two_step.second_step(zero_grad=True)
    for p, q, r in zip(model_a.parameters(), model_b.parameters(), model_c.parameters()):
        assert torch.equal(p, q) and torch.equal(p, r)
    report = two_step.on_new_data([(x, y)])
    assert len(report.params) == 4


def test_undo_first_step_puts_the_weights_back_without_stepping():
    model, x, y = _problem()
    before = [p.clone() for p in model.parameters()]
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.3, lr=0.1, momentum=0.9)
    _grads(model, x, y)
    opt.first_step()
    opt.undo_first_step()
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    assert not opt.state  # no base step was taken
    opt.undo_first_step()  # outside the window: nothing to do
    opt.state_dict()


@pytest.mark.parametrize("rho", [float("inf"), float("nan")])
def test_non_finite_rho_is_refused(rho):
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="must be a finite number >= 0"):
        SAM(model.parameters(), torch.optim.SGD, rho=rho, lr=0.1)
    with pytest.raises(ValueError, match="param group 0: rho=inf must be a finite number"):
        SAM([{"params": model.parameters(), "rho": float("inf")}], torch.optim.SGD, lr=0.1)
    opt = SAM(nn.Linear(2, 2).parameters(), torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match="param group new: rho=inf"):
        opt.add_param_group({"params": model.parameters(), "rho": float("inf")})
    assert len(opt.param_groups) == 1


def test_step_restores_the_weights_when_the_second_closure_raises():
    model, x, y = _problem()
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.3, lr=0.1, momentum=0.9)
    before = [p.detach().clone() for p in model.parameters()]
    calls = {"n": 0}

    def closure():
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("second closure failed")
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    with pytest.raises(RuntimeError, match="second closure failed"):
        opt.step(closure)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    assert not opt.state  # no base step was taken
    calls["n"] = 10  # the next step works
    opt.step(closure)
    assert not any(torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_on_new_data_is_refused_between_first_and_second_step():
    model, x, y = _problem()
    opt = DASHWrapper(SAM(model.parameters(), torch.optim.SGD, rho=0.1, lr=0.1), model=model, loss_fn=nn.MSELoss())
    _grads(model, x, y)
    opt.first_step(zero_grad=True)
    perturbed = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(RuntimeError, match="between SAM.first_step and SAM.second_step"):
        opt.on_new_data([(x, y)])
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), perturbed))
    assert opt.num_dash_calls == 0
    _grads(model, x, y)
    opt.second_step(zero_grad=True)
    assert opt.on_new_data([(x, y)]).call == opt.num_dash_calls == 1
