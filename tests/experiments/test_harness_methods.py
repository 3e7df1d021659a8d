"""The harness's ``fire`` method and the statistics of DASH's factors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from torch_dash_optim.baselines import fire_
from torch_dash_optim.experiments import ProtocolConfig
from torch_dash_optim.experiments.methods import factor_stats, new_learner, on_new_data
from torch_dash_optim.experiments.models import CNN1d


def test_fire_method_applies_fire_and_starts_a_fresh_optimizer() -> None:
    torch.manual_seed(0)
    config = ProtocolConfig(lr=0.1)
    learner = new_learner("fire", "sgd", CNN1d(12, 3, width=4), config)
    x, y = torch.randn(8, 12), torch.randint(0, 3, (8,))
    nn.functional.cross_entropy(learner.model(x), y).backward()
    learner.optimizer.step()
    assert learner.optimizer.state  # momentum buffers exist
    expected = copy.deepcopy(learner.model)
    fire_(expected)
    old_optimizer = learner.optimizer
    out = on_new_data("fire", "sgd", learner, config, lambda: CNN1d(12, 3, width=4), list, "cpu")
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
