"""state="keep" | "scale" | "reset" on SGD, Adam, AdamW, RMSprop, Adagrad and SAM's base."""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import warnings

import pytest
import torch
from _models import SmallCNN, make_data, train_steps
from _snapshot import assert_unchanged, snapshot
from torch import nn

from torch_dash_optim import SAM, DASHWrapper, state_policy
from torch_dash_optim import functional as F
from torch_dash_optim.state_policy import FIRST_MOMENT_KEYS, SECOND_MOMENT_KEYS, UnknownStateWarning, plan_state

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


class _Tracking(torch.optim.SGD):
    """SGD that also keeps state DASH does not know: a weight copy under an unknown name and a statistic."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                state.setdefault("shadow", p.detach().clone())
                state.setdefault("mystery", torch.ones_like(p))
        return loss


@pytest.mark.parametrize("policy", ["keep", "scale"])
def test_unknown_state_keys_are_reported_left_alone_and_warned_about_once(policy, monkeypatch):
    monkeypatch.setattr(state_policy, "_WARNED", set())
    model = nn.Linear(3, 2)
    opt = DASHWrapper(_Tracking(model.parameters(), lr=0.01, momentum=0.9), model=model,
                      loss_fn=nn.MSELoss(), state=policy)
    data = [(torch.randn(4, 3), torch.randn(4, 2))]
    train_steps_mse(model, opt, data)
    shadow = opt.state[model.weight]["shadow"].clone()
    with pytest.warns(UnknownStateWarning, match=r"_Tracking\['mystery'\], _Tracking\['shadow'\]") as caught:
        report = opt.on_new_data(data)
    assert len([w for w in caught if issubclass(w.category, UnknownStateWarning)]) == 1
    assert report.unknown_state == {"weight": ["shadow", "mystery"], "bias": ["shadow", "mystery"]}
    assert torch.equal(opt.state[model.weight]["shadow"], shadow)
    assert "state keys not scaled (unknown):" in str(report) and "weight: shadow, mystery" in str(report)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownStateWarning)  # the same key set is not warned about again
        assert opt.on_new_data(data).unknown_state == report.unknown_state


@pytest.mark.parametrize("policy", ["keep", "scale", "reset"])
def test_asgd_averaged_weights_are_shrunk_with_the_weights_under_every_policy(policy):
    model = nn.Linear(3, 2)
    opt = DASHWrapper(torch.optim.ASGD(model.parameters(), lr=0.01, t0=0), model=model,
                      loss_fn=nn.MSELoss(), state=policy, lambd=0.0)
    data = [(torch.randn(4, 3), torch.randn(4, 2))]
    train_steps_mse(model, opt, data)
    ax = {n: opt.state[p]["ax"].clone() for n, p in model.named_parameters()}
    report = opt.on_new_data(data)
    assert report.unknown_state == {}
    for name, p in model.named_parameters():
        if policy == "reset":
            assert p not in opt.state or not opt.state[p]  # ASGD starts its average afresh
        else:
            torch.testing.assert_close(opt.state[p]["ax"], ax[name] * report.factors[name])
    assert report.mean_factor < 1


def _adafactor_second_moment(state: dict, eps1: float) -> torch.Tensor:
    """The second moment Adafactor uses, rebuilt from its factored state as torch does."""
    row, col = state["row_var"], state["col_var"]
    return (row @ col) / row.mean(dim=-2, keepdim=True).clamp(min=eps1)


@pytest.mark.parametrize("granularity", ["kernel", "neuron", "tensor"])
def test_adafactors_factored_second_moment_is_scaled_by_the_factor_squared(granularity, monkeypatch):
    monkeypatch.setattr(state_policy, "_WARNED", set())
    torch.manual_seed(0)
    conv, lin = nn.Parameter(torch.randn(4, 3, 2, 2)), nn.Parameter(torch.randn(5, 6))
    opt = torch.optim.Adafactor([conv, lin], lr=0.01)
    for _ in range(3):
        for p in (conv, lin):
            p.grad = torch.randn_like(p) * torch.arange(1.0, p.shape[0] + 1).reshape(-1, *([1] * (p.ndim - 1)))
        opt.step()
    dims = {conv: F.unit_dims(conv.ndim, granularity), lin: F.unit_dims(lin.ndim, granularity)}
    factors = {p: F.dash_factors(p, torch.randn_like(p), dims[p], 0.1) for p in (conv, lin)}
    eps1 = torch.finfo(torch.float32).eps
    before = {p: _adafactor_second_moment(opt.state[p], eps1) for p in (conv, lin)}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownStateWarning)  # nothing is left alone
        plan = plan_state("scale", opt, [("conv", conv, factors[conv]), ("lin", lin, factors[lin])])
    assert plan.unknown == {}
    F.shrink_(plan.tensors, plan.factors)
    for p in (conv, lin):
        after = _adafactor_second_moment(opt.state[p], eps1)
        torch.testing.assert_close(after, before[p] * factors[p] ** 2, rtol=1e-5, atol=1e-12)


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


# -- reset with foreach and fused implementations (issue 10, item 9) -----------------------------

#: Every torch.optim optimizer that steps without a closure on dense gradients (LBFGS needs a
#: closure, SparseAdam sparse gradients), with settings that create all of its state.
RESET_OPTIMIZERS = {
    "ASGD": dict(lr=0.01, t0=0),
    "Adadelta": dict(lr=0.5),
    "Adafactor": dict(lr=0.01),
    "Adagrad": dict(lr=0.05, initial_accumulator_value=0.1),
    "Adam": dict(lr=0.01, amsgrad=True),
    "AdamW": dict(lr=0.01),
    "Adamax": dict(lr=0.01),
    "Muon": dict(lr=0.01),
    "NAdam": dict(lr=0.01),
    "RAdam": dict(lr=0.01),
    "RMSprop": dict(lr=0.01, momentum=0.9, centered=True),
    "Rprop": dict(lr=0.01),
    "SGD": dict(lr=0.05, momentum=0.9, nesterov=True),
}
#: Optimizers with a fused implementation on CPU in the pinned torch.
FUSED_ON_CPU = {"Adagrad", "Adam", "AdamW", "SGD"}


def test_the_reset_matrix_covers_every_torch_optimizer_and_every_cpu_implementation():
    public = {n for n in dir(torch.optim) if isinstance(getattr(torch.optim, n), type)
              and issubclass(getattr(torch.optim, n), torch.optim.Optimizer)}
    assert public - set(RESET_OPTIMIZERS) == {"Optimizer", "LBFGS", "SparseAdam"}
    fused = {n for n in RESET_OPTIMIZERS if "fused" in inspect.signature(getattr(torch.optim, n)).parameters}
    for name in fused - FUSED_ON_CPU:  # fused exists but not on CPU
        with pytest.raises(RuntimeError):
            _reset_run(name, "fused")
    assert FUSED_ON_CPU <= fused


def _reset_model(name: str) -> nn.Module:
    if name == "Muon":  # Muon takes 2-D parameters only
        return nn.Sequential(nn.Linear(6, 8, bias=False), nn.ReLU(), nn.Linear(8, 3, bias=False))
    # LayerNorm's parameters are not shrunk: each group mixes reset and kept state.
    return nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 3))


def _reset_run(name: str, impl: str, **overrides):
    torch.manual_seed(0)
    model = _reset_model(name)
    kwargs = {**RESET_OPTIMIZERS[name], **overrides}
    if impl != "for-loop":
        kwargs[impl] = True
    elif "foreach" in inspect.signature(getattr(torch.optim, name)).parameters:
        kwargs["foreach"] = False
    opt = DASHWrapper(getattr(torch.optim, name)(model.parameters(), **kwargs), model=model,
                      loss_fn=nn.CrossEntropyLoss(), state="reset")
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(3)]
    train_steps(model, opt, data, steps=3)
    kept = {n: copy.deepcopy(opt.state[p]) for n, p in model.named_parameters()}
    report = opt.on_new_data(data)
    after_reset = {n: copy.deepcopy(opt.state[p]) if p in opt.state else {} for n, p in model.named_parameters()}
    train_steps(model, opt, data, steps=3)
    return model, opt, report, kept, after_reset


@functools.cache
def _reference_run(name: str):
    return _reset_run(name, "for-loop")


def _impls(name: str) -> list[str]:
    params = inspect.signature(getattr(torch.optim, name)).parameters
    return ["foreach"] * ("foreach" in params) + ["fused"] * (name in FUSED_ON_CPU)


@pytest.mark.parametrize(
    ("name", "impl"), [(n, i) for n in sorted(RESET_OPTIMIZERS) for i in ["for-loop", *_impls(n)]]
)
def test_reset_is_safe_and_the_same_for_every_implementation(name, impl):
    """Reset, then train on: no crash, and the same weights as the for-loop implementation."""
    model, opt, report, kept, after_reset = _reset_run(name, impl)
    ref_model, _, ref_report, _, _ = _reference_run(name)
    shrunk = {p.name for p in report.params}
    assert shrunk and shrunk == {p.name for p in ref_report.params}
    assert set(dict(model.named_parameters())) - shrunk or name == "Muon"  # some state is kept
    for n, p in model.named_parameters():
        torch.testing.assert_close(p, dict(ref_model.named_parameters())[n], rtol=1e-5, atol=1e-6)
        if n not in shrunk:  # state of parameters DASH left alone is untouched
            assert after_reset[n].keys() == kept[n].keys()
            for key, value in kept[n].items():
                now = after_reset[n][key]
                assert torch.equal(value, now) if torch.is_tensor(value) else value == now
        elif name == "SGD" and impl == "fused":  # fused SGD needs every buffer: zeroed, not dropped
            assert not after_reset[n]["momentum_buffer"].any()
        else:
            assert after_reset[n] == {}
        if "step" in opt.state[p]:  # the shrunk parameters' counters started over
            assert float(opt.state[p]["step"]) == (3 if n in shrunk else 6)


def test_fused_sgd_with_dampening_zeroes_the_buffers_of_shrunk_parameters_only():
    model, opt, report, kept, after_reset = _reset_run("SGD", "fused", nesterov=False, dampening=0.5)
    shrunk = {p.name for p in report.params}
    assert shrunk and "1.weight" not in shrunk
    for n in shrunk:
        assert not after_reset[n]["momentum_buffer"].any()
    assert torch.equal(after_reset["1.weight"]["momentum_buffer"], kept["1.weight"]["momentum_buffer"])
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_unknown_policy_is_refused():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="unknown state 'zero'; use one of 'keep', 'scale', 'reset'"):
        DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, state="zero")


class _GroupStepSGD(torch.optim.Optimizer):
    """A momentum SGD with bias correction that counts steps per group (as Adan-like optimizers do)."""

    def __init__(self, params, lr=0.1, beta=0.9):
        super().__init__(params, dict(lr=lr, beta=beta))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            group["step"] = group.get("step", 0) + 1
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["m"] = torch.zeros_like(p)
                state["m"].lerp_(p.grad, 1 - group["beta"])
                p.add_(state["m"] / (1 - group["beta"] ** group["step"]), alpha=-group["lr"])
        return loss


def _sf_adamw(params):
    schedulefree = pytest.importorskip("schedulefree")
    return schedulefree.AdamWScheduleFree(params, lr=0.01, warmup_steps=0)


def _sf_sgd(params):
    schedulefree = pytest.importorskip("schedulefree")
    return schedulefree.SGDScheduleFree(params, lr=0.05, warmup_steps=2)


def _first_update_after(make, reset_by_dash: bool):
    """The weights after one step taken right after a reset (or on a fresh optimizer on the same weights)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(3)]
    opt = DASHWrapper(make(model.parameters()), model=model, loss_fn=nn.CrossEntropyLoss(), state="reset")
    if hasattr(opt.optimizer, "train"):
        opt.optimizer.train()
    train_steps(model, opt, data, steps=20)
    opt.on_new_data(data)
    if not reset_by_dash:  # a fresh optimizer on the shrunk weights
        opt = make(model.parameters())
        if hasattr(opt, "train"):
            opt.train()
    x, y = data[0]
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    return [p.detach().clone() for p in model.parameters()], opt


@pytest.mark.filterwarnings("ignore::torch_dash_optim.state_policy.UnknownStateWarning")
@pytest.mark.parametrize("make", [_GroupStepSGD, _sf_adamw, _sf_sgd], ids=["group-step", "sf-adamw", "sf-sgd"])
def test_reset_restarts_group_counters_as_a_fresh_optimizer(make):
    after_reset, opt = _first_update_after(make, reset_by_dash=True)
    fresh, fresh_opt = _first_update_after(make, reset_by_dash=False)
    for a, b in zip(after_reset, fresh, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    for group, fresh_group in zip(opt.param_groups, fresh_opt.param_groups, strict=True):
        for key in ("step", "k", "weight_sum", "lr_max"):
            assert group.get(key) == fresh_group.get(key)


@pytest.mark.parametrize("make", [_GroupStepSGD, _sf_adamw], ids=["group-step", "sf-adamw"])
def test_reset_refuses_a_group_counter_shared_with_parameters_it_does_not_shrink(make):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 3))
    data = [(torch.randn(8, 6), torch.randint(0, 3, (8,))) for _ in range(3)]
    opt = DASHWrapper(make(model.parameters()), model=model, loss_fn=nn.CrossEntropyLoss(), state="reset")
    if hasattr(opt.optimizer, "train"):
        opt.optimizer.train()
    train_steps(model, opt, data, steps=3)
    before = snapshot(model, opt)
    with pytest.raises(ValueError, match=r"state='reset' cannot give param group 0 .* counters .*own"):
        opt.on_new_data(data)
    assert_unchanged(before, model, opt)
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.startswith("1.")]},
        {"params": list(model[1].parameters()), "dash": False},
    ]
    split = DASHWrapper(make(groups), model=model, loss_fn=nn.CrossEntropyLoss(), state="reset")
    if hasattr(split.optimizer, "train"):
        split.optimizer.train()
    train_steps(model, split, data, steps=3)
    split.on_new_data(data)  # the fix the error names
    assert split.param_groups[1].get("step", split.param_groups[1].get("k")) == 3


# -- issue 25: Adafactor under "keep", LBFGS's one history -------------------------------------


@pytest.mark.parametrize("name", sorted(RESET_OPTIMIZERS))
def test_keep_knows_the_state_of_every_torch_optimizer_and_leaves_it_alone(name, monkeypatch):
    """Adafactor's col_var (1 x columns) was reported unknown, with a warning about pulling weights back."""
    monkeypatch.setattr(state_policy, "_WARNED", set())
    torch.manual_seed(0)
    model = _reset_model(name)
    opt = DASHWrapper(getattr(torch.optim, name)(model.parameters(), **RESET_OPTIMIZERS[name]), model=model,
                      loss_fn=nn.CrossEntropyLoss(), state="keep")
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(3)]
    train_steps(model, opt, data, steps=3)
    before = {n: copy.deepcopy(opt.state[p]) for n, p in model.named_parameters()}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownStateWarning)
        report = opt.on_new_data(data)
    assert report.unknown_state == {}
    assert "state keys not scaled" not in str(report)
    weight_like = {"ax"}  # ASGD's averaged weights follow the weights under every policy
    for n, p in model.named_parameters():
        for key, value in before[n].items():
            if key not in weight_like:
                now = opt.state[p][key]
                assert torch.equal(value, now) if torch.is_tensor(value) else value == now, (n, key)


def _lbfgs_run(policy: str, first: str):
    """An LBFGS run of 3 steps; ``first`` says whether its first parameter is shrunk ("linear") or not ("norm")."""
    torch.manual_seed(0)
    head = [nn.LayerNorm(6)] if first == "norm" else [nn.Linear(6, 6), nn.LayerNorm(6)]
    model = nn.Sequential(*head, nn.Linear(6, 3))
    opt = DASHWrapper(torch.optim.LBFGS(model.parameters(), lr=0.5, history_size=4), model=model,
                      loss_fn=nn.CrossEntropyLoss(), state=policy)
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)) for _ in range(2)]
    train_steps(model, opt, data, steps=3)
    return model, opt, data


def _lbfgs_step(model, opt, data):
    x, y = data[0]

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    opt.step(closure)
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("first", ["norm", "linear"])
def test_reset_restarts_lbfgs_whole_as_a_fresh_lbfgs(first):
    """LBFGS keeps its one history under its first parameter: reset did nothing when that one was not shrunk."""
    model, opt, data = _lbfgs_run("reset", first)
    first_param = next(model.parameters())
    assert opt.state[first_param]["n_iter"] > 0
    report = opt.on_new_data(data)
    assert report.params and (first == "linear") == (report.params[0].name == "0.weight")
    assert not opt.state.get(first_param)  # the whole history is gone
    fresh_model = copy.deepcopy(model)  # the shrunk weights, with a fresh LBFGS
    fresh = torch.optim.LBFGS(fresh_model.parameters(), lr=0.5, history_size=4)
    after = _lbfgs_step(model, opt, data)
    for a, b in zip(after, _lbfgs_step(fresh_model, fresh, data), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("first", ["norm", "linear"])
def test_keep_leaves_lbfgs_alone_and_knows_its_keys(first, monkeypatch):
    monkeypatch.setattr(state_policy, "_WARNED", set())
    model, opt, data = _lbfgs_run("keep", first)
    first_param = next(model.parameters())
    before = copy.deepcopy(opt.state[first_param])
    assert set(before) <= state_policy.LBFGS_KEYS and {"d", "prev_flat_grad", "old_dirs"} <= set(before)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownStateWarning)
        report = opt.on_new_data(data)
    assert report.unknown_state == {}
    now = opt.state[first_param]
    assert now.keys() == before.keys()
    for key, value in before.items():
        if torch.is_tensor(value):
            assert torch.equal(value, now[key]), key
        elif isinstance(value, list):
            pairs = zip(value, now[key], strict=True)
            assert all(torch.equal(a, b) if torch.is_tensor(a) else a == b for a, b in pairs), key
        else:
            assert value == now[key], key


def test_scale_is_refused_for_lbfgs_before_anything_changes():
    """Refused when the wrapper is built or its config changed, before any gradient pass is wasted."""
    with pytest.raises(ValueError, match=r"state='scale' cannot scale the state of LBFGS: .* state='reset'"):
        _lbfgs_run("scale", "linear")
    model, opt, data = _lbfgs_run("keep", "linear")
    before = snapshot(model, opt)
    with pytest.raises(ValueError, match="cannot scale the state of LBFGS"):
        opt.config = dataclasses.replace(opt.config, state="scale")
    assert opt.config.state == "keep"
    assert_unchanged(before, model, opt)
    with pytest.raises(ValueError, match="cannot scale the state of LBFGS"):
        state_policy.check_policy("scale", opt)
    for policy in ("keep", "reset"):
        state_policy.check_policy(policy, opt)
    state_policy.check_policy("scale", torch.optim.Adam(model.parameters()))
