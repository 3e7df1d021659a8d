"""The harness's methods (fire, the controls of DASH, a user's own) and the statistics of DASH's factors."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from torch_dash_optim.baselines import fire_
from torch_dash_optim.experiments import METHODS, ProtocolConfig, run_protocol
from torch_dash_optim.experiments.methods import (
    BUILTIN,
    Arrival,
    Learner,
    Method,
    factor_stats,
    get_method,
)
from torch_dash_optim.experiments.models import CNN1d


def test_fire_method_applies_fire_and_starts_a_fresh_optimizer() -> None:
    torch.manual_seed(0)
    config = ProtocolConfig(lr=0.1)
    learner = get_method("fire").new_learner(CNN1d(12, 3, width=4), "sgd", config)
    x, y = torch.randn(8, 12), torch.randint(0, 3, (8,))
    nn.functional.cross_entropy(learner.model(x), y).backward()
    learner.optimizer.step()
    assert learner.optimizer.state  # momentum buffers exist
    expected = copy.deepcopy(learner.model)
    fire_(expected)
    old_optimizer = learner.optimizer
    arrival = Arrival("sgd", config, lambda: CNN1d(12, 3, width=4), list, torch.device("cpu"))
    out = get_method("fire").on_new_data(learner, arrival)
    assert out is learner and learner.optimizer is not old_optimizer and not learner.optimizer.state
    for (name, p), q in zip(learner.model.named_parameters(), expected.parameters(), strict=True):
        assert torch.equal(p, q), name
    assert [id(p) for p in learner.optimizer.param_groups[0]["params"]] == [id(p) for p in learner.model.parameters()]


def test_factor_stats_group_units_by_layer_kind() -> None:
    model = CNN1d(12, 3, width=2, kernels=(3,))
    lambd = 0.3
    factors = {
        "features.0.weight": torch.tensor([[[0.3]], [[0.9]]]),  # 2 kernel slices (out 2 x in 1)
        "features.0.bias": torch.tensor([0.3]),
        "head.weight": torch.tensor([[0.3], [0.3], [0.7]]),  # 3 rows
        "head.bias": torch.tensor([0.5]),
    }
    stats = factor_stats(model, factors, lambd)
    assert list(stats) == ["conv", "linear", "bias"]
    assert (stats["conv"]["units"], stats["linear"]["units"], stats["bias"]["units"]) == (2, 3, 2)
    assert stats["conv"]["at_floor"] == 0.5 and stats["linear"]["at_floor"] == pytest.approx(2 / 3)
    assert stats["bias"]["at_floor"] == 0.5
    assert stats["linear"]["q50"] == pytest.approx(0.3) and stats["conv"]["mean"] == pytest.approx(0.6)
    assert sum(stats["linear"]["hist"]) == 3 and stats["linear"]["hist"][6] == 2  # two at 0.30, bin [0.30, 0.35)


def _trained(method: str, config: ProtocolConfig):
    torch.manual_seed(2)
    learner = get_method(method).new_learner(CNN1d(12, 3, width=4), "sgd", config)
    x, y = torch.randn(32, 12), torch.randint(0, 3, (32,))
    for _ in range(20):
        learner.optimizer.zero_grad()
        nn.functional.cross_entropy(learner.model(x), y).backward()
        learner.optimizer.step()
    return learner, [(x[:16], y[:16]), (x[16:], y[16:])]


def _dash_twin(learner, config: ProtocolConfig, batches):
    """What DASH does to the learner's weights, on a copy: its report (the learner is untouched)."""
    twin = get_method("dash").new_learner(copy.deepcopy(learner.model), "sgd", config)
    report = twin.optimizer.on_new_data(batches)
    assert 0 < report.mean_factor < 1 and report.factors
    return report


def _applied(before: dict, model: nn.Module, name: str, like: torch.Tensor) -> torch.Tensor:
    """The factor each unit of parameter ``name`` was multiplied by (least squares per unit, shaped as ``like``)."""
    old, new = before[name].double(), dict(model.named_parameters())[name].detach().double()
    dims = tuple(d for d in range(old.ndim) if like.shape[d] == 1) if like.ndim == old.ndim else tuple(range(old.ndim))
    return ((old * new).sum(dims, keepdim=True) / (old * old).sum(dims, keepdim=True)).reshape(like.shape)


def _arrival(config: ProtocolConfig, batches) -> Arrival:
    return Arrival("sgd", config, lambda: CNN1d(12, 3, width=4), lambda: batches, torch.device("cpu"))


def test_uniform_global_shrinks_what_dash_would_by_dashs_mean_factor() -> None:
    config = ProtocolConfig(lr=0.1)
    learner, batches = _trained("uniform_global", config)
    before = {n: p.detach().clone() for n, p in learner.model.named_parameters()}
    momentum = {id(p): s["momentum_buffer"].clone() for p, s in learner.optimizer.state.items()}
    report = _dash_twin(learner, config, batches)

    out = get_method("uniform_global").on_new_data(learner, _arrival(config, batches))
    assert out is learner and learner.info["dash_mean_factor"] == pytest.approx(report.mean_factor, rel=1e-6)
    for name, p in learner.model.named_parameters():
        expected = before[name] * report.mean_factor if name in report.factors else before[name]
        torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=0)
    assert {id(p): s["momentum_buffer"] for p, s in learner.optimizer.state.items()}.keys() == momentum.keys()
    for p, s in learner.optimizer.state.items():
        assert torch.equal(s["momentum_buffer"], momentum[id(p)])  # state kept, as DASH's "keep"
    factors = torch.cat([f.flatten() for f in report.factors.values()])
    assert factors.max() - factors.min() > 0.1  # DASH itself is not uniform here


def test_uniform_global_takes_a_fixed_factor() -> None:
    config = ProtocolConfig(lr=0.1, uniform_factor=0.55)
    learner, batches = _trained("uniform_global", config)
    before = {n: p.detach().clone() for n, p in learner.model.named_parameters()}
    report = _dash_twin(learner, config, batches)
    get_method("uniform_global").on_new_data(learner, _arrival(config, batches))
    assert learner.info["dash_mean_factor"] == pytest.approx(0.55)
    for name, p in learner.model.named_parameters():
        expected = before[name] * 0.55 if name in report.factors else before[name]
        torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=0)


def test_uniform_matched_keeps_each_tensors_mean_factor() -> None:
    config = ProtocolConfig(lr=0.1)
    learner, batches = _trained("uniform_matched", config)
    before = {n: p.detach().clone() for n, p in learner.model.named_parameters()}
    report = _dash_twin(learner, config, batches)
    get_method("uniform_matched").on_new_data(learner, _arrival(config, batches))
    spread = 0.0
    for name, dash in report.factors.items():
        applied = _applied(before, learner.model, name, dash)
        # every unit of the tensor shrinks alike, by DASH's mean factor for that tensor
        torch.testing.assert_close(applied, torch.full_like(applied, dash.double().mean().item()), rtol=1e-5, atol=0)
        spread = max(spread, float(dash.max() - dash.min()))
    assert spread > 0.1  # so the control differs from DASH
    for name, p in learner.model.named_parameters():
        if name not in report.factors:
            assert torch.equal(p.detach(), before[name]), name
    means = {name: float(f.double().mean()) for name, f in report.factors.items()}
    assert len({round(m, 6) for m in means.values()}) > 1  # not one global factor
    weights = {n: f.numel() for n, f in report.factors.items()}
    expected = sum(means[n] * weights[n] for n in means) / sum(weights.values())
    assert learner.info["dash_mean_factor"] == pytest.approx(expected, rel=1e-6)


def test_shuffled_keeps_each_tensors_multiset_of_factors_and_moves_them() -> None:
    config = ProtocolConfig(lr=0.1)
    learner, batches = _trained("shuffled", config)
    before = {n: p.detach().clone() for n, p in learner.model.named_parameters()}
    twin = copy.deepcopy(learner)
    report = _dash_twin(learner, config, batches)
    torch.manual_seed(7)
    get_method("shuffled").on_new_data(learner, _arrival(config, batches))
    moved = 0
    for name, dash in report.factors.items():
        applied = _applied(before, learner.model, name, dash).float()
        # the same multiset of factors in each tensor
        torch.testing.assert_close(applied.flatten().sort().values, dash.flatten().sort().values, rtol=1e-5, atol=1e-6)
        moved += int((~torch.isclose(applied, dash, rtol=1e-5, atol=1e-6)).sum())
    assert moved > 0  # on other units than DASH's
    assert learner.info["dash_mean_factor"] == pytest.approx(report.mean_factor, rel=1e-5)
    # seeded from the run: the same global seed gives the same permutation
    torch.manual_seed(7)
    get_method("shuffled").on_new_data(twin, _arrival(config, batches))
    for (name, p), q in zip(learner.model.named_parameters(), twin.model.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_the_old_name_uniform_is_a_deprecated_alias() -> None:
    with pytest.warns(DeprecationWarning, match="'uniform' is deprecated .* use 'uniform_global' instead"):
        method = get_method("uniform")
    assert method is BUILTIN["uniform_global"] and "uniform" not in BUILTIN


class Halve(Method):
    """A user's method: halve every weight when data arrives (module level, so it pickles)."""

    name, label = "halve", "Halve"

    def on_new_data(self, learner: Learner, arrival: Arrival) -> Learner:
        with torch.no_grad():
            for p in learner.model.parameters():
                p.mul_(0.5)
        learner.info["dash_mean_factor"] = 0.5
        return learner


def _data() -> tuple[TensorDataset, TensorDataset]:
    g = torch.Generator().manual_seed(4)
    x = torch.randn(90, 12, generator=g)
    y = (x[:, 0] > 0).long()
    return TensorDataset(x[:60], y[:60]), TensorDataset(x[60:], y[60:])


def test_a_users_method_runs_beside_the_builtin_ones(tmp_path) -> None:
    config = ProtocolConfig(num_chunks=2, lr=0.05, batch_size=16, max_epochs=2)
    factory = functools.partial(CNN1d, 12, 2, width=3, kernels=(3,))
    records = run_protocol(*_data(), factory, config=config, methods=["warm", Halve()], seeds=[0], out=tmp_path,
                           progress=False)
    by = {(r["method"], r["experiment"]): r for r in records}
    assert set(by) == {(m, e) for m in ("warm", "halve") for e in (1, 2)}
    assert by[("halve", 2)]["dash_mean_factor"] == 0.5 and by[("warm", 2)]["dash_mean_factor"] is None
    assert by[("halve", 1)]["test_loss"] == by[("warm", 1)]["test_loss"]  # same start
    assert by[("halve", 2)]["test_loss"] != by[("warm", 2)]["test_loss"]
    assert (tmp_path / "runs" / "halve_sgd_seed0.json").exists()


@pytest.mark.parametrize(
    ("methods", "error", "message"),
    [
        (["magic"], ValueError, "unknown methods \\['magic'\\]"),
        ([Halve(), Halve()], ValueError, "lists one twice \\('halve'\\)"),
        ([type("Dash2", (Method,), {"name": "dash"})()], ValueError, "takes the name 'dash' of a built-in method"),
        ([type("Bad", (Method,), {"name": "a/b"})()], ValueError, "name='a/b' must be letters, digits"),
        ([42], TypeError, "a method is a name .* or a Method object, not int"),
    ],
)
def test_bad_methods_are_named(methods: list, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        run_protocol(*_data(), lambda: nn.Linear(12, 2), methods=methods, progress=False)


def test_builtin_registry_matches_the_method_names() -> None:
    assert set(BUILTIN) >= set(METHODS) and all(BUILTIN[name].name == name for name in BUILTIN)
    assert get_method("uniform_global").label == "Uniform shrink (global)"
    assert get_method(BUILTIN["dash"]) is BUILTIN["dash"]


def test_the_free_functions_of_0_2_are_deprecated_and_name_the_method_calls() -> None:
    from torch_dash_optim.experiments import methods

    assert "on_new_data" not in methods.__all__ and "new_learner" not in methods.__all__
    assert "on_new_data" not in vars(methods) and "new_learner" not in vars(methods)  # one free on_new_data
    config = ProtocolConfig(lr=0.1)
    old = r"methods\.new_learner is deprecated .*; use get_method\(method\)\.new_learner\(model, optimizer, config\)"
    with pytest.warns(DeprecationWarning, match=old):
        from torch_dash_optim.experiments.methods import new_learner
    new = r"methods\.on_new_data is deprecated .*; use get_method\(method\)\.on_new_data\(learner, Arrival\("
    with pytest.warns(DeprecationWarning, match=new):
        on_new_data = methods.on_new_data
    torch.manual_seed(0)
    learner = new_learner("sp", "sgd", nn.Linear(2, 2), config)
    torch.manual_seed(0)
    twin = get_method("sp").new_learner(nn.Linear(2, 2), "sgd", config)
    before = learner.model.weight.detach().clone()
    torch.manual_seed(1)
    out = on_new_data("sp", "sgd", learner, config, lambda: nn.Linear(2, 2), list, "cpu")
    torch.manual_seed(1)
    get_method("sp").on_new_data(twin, Arrival("sgd", config, lambda: nn.Linear(2, 2), list, torch.device("cpu")))
    assert out is learner and not torch.equal(learner.model.weight, before)  # shrunk and perturbed
    assert torch.equal(learner.model.weight, twin.model.weight)  # exactly what the method call does
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        methods.nope  # noqa: B018
