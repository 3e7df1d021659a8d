"""Shrink & Perturb, L2-init and last-layer reset: their formulas, exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torch_dash_optim.baselines import L2Init, l2_init_penalty, last_layer, reset_last_layer_, shrink_perturb_


def _net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 3, 3),
        nn.BatchNorm2d(3),
        nn.Flatten(),
        nn.Linear(12, 4, bias=False),
        nn.ReLU(),
        nn.Linear(4, 2),
    )


def test_shrink_perturb_is_lambda_w_plus_gaussian_noise() -> None:
    model = _net()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(5)
    assert shrink_perturb_(model, shrink=0.3, sigma=0.01, generator=g) == 5  # 2 conv + 1 linear + 2 linear
    g = torch.Generator().manual_seed(5)
    for name in ("0.weight", "0.bias", "3.weight", "5.weight", "5.bias"):  # module order, weight then bias
        noise = torch.randn(before[name].shape, generator=g)
        torch.testing.assert_close(model.state_dict()[name], 0.3 * before[name] + 0.01 * noise)
    for name in ("1.weight", "1.bias", "1.running_mean", "1.running_var"):  # BatchNorm untouched
        assert torch.equal(model.state_dict()[name], before[name])


def test_shrink_perturb_noise_has_the_given_std() -> None:
    layer = nn.Linear(1000, 1000, bias=False)
    nn.init.zeros_(layer.weight)
    shrink_perturb_(layer, shrink=0.3, sigma=0.01)
    assert layer.weight.std().item() == pytest.approx(0.01, rel=0.02)
    assert layer.weight.mean().abs().item() < 1e-4


def test_shrink_perturb_rejects_bad_sigma() -> None:
    with pytest.raises(ValueError, match="sigma=-1"):
        shrink_perturb_(nn.Linear(2, 2), sigma=-1)


def test_l2_init_is_a_true_sum_of_squares() -> None:
    a, b = torch.tensor([3.0, 0.0], requires_grad=True), torch.tensor([[4.0]], requires_grad=True)
    a0, b0 = torch.zeros(2), torch.zeros(1, 1)
    penalty = l2_init_penalty([a, b], [a0, b0], strength=0.1)
    # sum of squares 9 + 16 = 25, not (|a| + |b|)^2 = 49 as in the authors' code
    assert penalty.item() == pytest.approx(2.5)
    penalty.backward()
    torch.testing.assert_close(a.grad, 2 * 0.1 * a.detach())
    torch.testing.assert_close(b.grad, 2 * 0.1 * b.detach())


def test_l2_init_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="2 parameters but 1 anchors"):
        l2_init_penalty([torch.zeros(1), torch.zeros(1)], [torch.zeros(1)], 0.1)
    with pytest.raises(ValueError, match="strength=-0.5"):
        L2Init(nn.Linear(2, 2), strength=-0.5)


def test_l2_init_anchors_at_creation_over_all_trainable_params() -> None:
    model = _net()
    reg = L2Init(model, strength=0.5)
    assert reg().item() == 0.0
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    expected = 0.5 * sum(p.numel() for p in model.parameters())
    assert reg().item() == pytest.approx(expected)


def test_reset_last_layer_reinitialises_only_the_last_layer() -> None:
    model = _net()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.manual_seed(3)
    assert reset_last_layer_(model) == ["5"]
    fresh = nn.Linear(4, 2)
    torch.manual_seed(3)
    fresh.reset_parameters()
    torch.testing.assert_close(model[5].weight, fresh.weight)
    torch.testing.assert_close(model[5].bias, fresh.bias)
    for name, value in before.items():
        if not name.startswith("5."):
            assert torch.equal(model.state_dict()[name], value), name


def test_reset_last_layer_errors_name_the_fix() -> None:
    with pytest.raises(ValueError, match="no Conv or Linear"):
        last_layer(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="'nope' is not a module.*e.g. '5'"):
        reset_last_layer_(_net(), names=["nope"])
