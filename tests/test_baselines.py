"""Shrink & Perturb, L2-init, last-layer reset and FIRE: their formulas, exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torch_dash_optim.baselines import (
    L2Init,
    fire_,
    l2_init_penalty,
    last_layer,
    newton_schulz,
    reset_last_layer_,
    shrink_perturb_,
)


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


# ---- FIRE ---------------------------------------------------------------------------------------


def _orthogonal(n: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q.float()


def test_newton_schulz_one_iteration_is_the_published_formula() -> None:
    m = torch.randn(7, 4, generator=torch.Generator().manual_seed(0))
    x = m / m.norm()
    torch.testing.assert_close(newton_schulz(m, iterations=1), 1.5 * x - 0.5 * x @ (x.T @ x))
    wide = m.T  # 4 x 7: transposed, iterated, transposed back
    torch.testing.assert_close(newton_schulz(wide, iterations=1), (1.5 * x - 0.5 * x @ (x.T @ x)).T)
    torch.testing.assert_close(newton_schulz(m, iterations=0), x)


def test_newton_schulz_reaches_the_polar_factor_of_a_well_conditioned_matrix() -> None:
    g = torch.Generator().manual_seed(1)
    u, _ = torch.linalg.qr(torch.randn(12, 5, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
    s = torch.tensor([1.0, 0.9, 0.8, 0.7, 0.6], dtype=torch.float64)
    m = u @ torch.diag(s) @ v.T
    torch.testing.assert_close(newton_schulz(m), u @ v.T, atol=1e-6, rtol=0)


def test_fire_leaves_a_square_orthogonal_linear_weight_unchanged() -> None:
    layer = nn.Linear(6, 6)
    q = _orthogonal(6, 2)
    with torch.no_grad():
        layer.weight.copy_(q)
    bias = layer.bias.detach().clone()
    assert fire_(layer) == ["weight"]
    torch.testing.assert_close(layer.weight.detach(), q, atol=1e-5, rtol=0)  # scale sqrt(6/6) = 1
    assert torch.equal(layer.bias, bias)


def test_fire_conv_slices_are_orthogonalised_one_position_at_a_time() -> None:
    conv = nn.Conv2d(4, 4, 3, bias=False)
    slices = {(i, j): _orthogonal(4, 10 + 3 * i + j) for i in range(3) for j in range(3)}
    with torch.no_grad():
        for (i, j), q in slices.items():
            conv.weight[:, :, i, j] = 2.5 * q
    fire_(conv)
    for (i, j), q in slices.items():  # scale sqrt(4/4) / 9 kernel elements
        torch.testing.assert_close(conv.weight[:, :, i, j].detach(), q / 9, atol=1e-5, rtol=0)


def test_fire_singular_values_are_equal_at_the_published_scale() -> None:
    torch.manual_seed(0)
    tall, wide = nn.Linear(16, 64), nn.Linear(64, 16)  # weights 64 x 16 and 16 x 64
    conv = nn.Conv1d(3, 8, 5)
    model = nn.Sequential(tall, wide, conv)
    fire_(model)
    for layer, scale in ((tall, 2.0), (wide, 0.5)):
        s = torch.linalg.svdvals(layer.weight.detach())
        torch.testing.assert_close(s, torch.full_like(s, scale), atol=1e-3, rtol=0)
    for k in range(5):  # each of the 5 positions: 8 x 3, singular values sqrt(8/3) / 5
        s = torch.linalg.svdvals(conv.weight[:, :, k].detach())
        torch.testing.assert_close(s, torch.full_like(s, (8 / 3) ** 0.5 / 5), atol=1e-3, rtol=0)


def test_fire_conv_positions_are_independent() -> None:
    conv = nn.Conv1d(3, 8, 5, bias=False)
    other = nn.Conv1d(3, 8, 5, bias=False)
    with torch.no_grad():
        other.weight.copy_(conv.weight)
        other.weight[:, :, 2] = torch.randn(8, 3)
    fire_(conv)
    fire_(other)
    for k in (0, 1, 3, 4):
        assert torch.equal(conv.weight[:, :, k], other.weight[:, :, k])
    assert not torch.allclose(conv.weight[:, :, 2], other.weight[:, :, 2])


def test_fire_touches_only_conv_and_linear_weights() -> None:
    model = nn.Sequential(
        nn.Embedding(10, 6),
        nn.LayerNorm(6),
        nn.Linear(6, 8),
        nn.BatchNorm1d(8),
        nn.Linear(8, 3, bias=False),
    )
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    params = list(model.parameters())
    assert fire_(model) == ["2.weight", "4.weight"]
    assert [id(p) for p in model.parameters()] == [id(p) for p in params]  # same Parameter objects
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]) == (name not in ("2.weight", "4.weight")), name


def test_fire_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="iterations=-1 must be an integer >= 0"):
        fire_(nn.Linear(2, 2), iterations=-1)
    with pytest.raises(ValueError, match="2-D matrix"):
        newton_schulz(torch.ones(3))


# -- issue 27: FIRE's mixing weight alpha, as in the official code's first release -----------------


def _official_fire(model: nn.Module, alpha: float, iteration: int) -> None:
    """``fire(model, alpha, iteration)`` of github.com/isaac7778/FIRE, vision/interventions/fire.py at
    commit 7d6e191 (numpy's sqrt as math's), the one release that took ``alpha``."""

    def ns(matrix: torch.Tensor, num_iters: int) -> torch.Tensor:
        a, b = (1.5, -0.5)
        do_transpose = matrix.size(1) > matrix.size(0)
        x = matrix.T if do_transpose else matrix
        x = x / x.norm()
        for _ in range(num_iters):
            x = a * x + b * x @ (x.T @ x)
        return x.T if do_transpose else x

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                weight_matrix = m.weight.data.detach().clone()
                if weight_matrix.ndim == 4:
                    ortho = torch.zeros_like(weight_matrix)
                    for i in range(weight_matrix.shape[2]):
                        for j in range(weight_matrix.shape[3]):
                            ortho[:, :, i, j] = ns(weight_matrix[:, :, i, j], iteration)
                else:
                    ortho = ns(weight_matrix, iteration)
                kernel_size = weight_matrix.shape[2] * weight_matrix.shape[3] if weight_matrix.ndim == 4 else 1.0
                ortho *= (weight_matrix.shape[0] / weight_matrix.shape[1]) ** 0.5 / kernel_size
                m.weight.data = alpha * ortho + (1 - alpha) * weight_matrix


@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.7, 1.0])
def test_fire_alpha_mixes_as_the_official_code(alpha: float) -> None:
    torch.manual_seed(0)
    model = _net()
    reference = _net()
    reference.load_state_dict(model.state_dict())
    assert fire_(model, iterations=6, alpha=alpha) == ["0.weight", "3.weight", "5.weight"]
    _official_fire(reference, alpha, 6)
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value, rtol=1e-5, atol=1e-6)


def test_fire_default_alpha_is_the_published_fire_bit_for_bit() -> None:
    torch.manual_seed(0)
    model, again = _net(), _net()
    again.load_state_dict(model.state_dict())
    fire_(model)
    fire_(again, alpha=1.0)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_fire_alpha_zero_leaves_the_weights() -> None:
    torch.manual_seed(0)
    model = _net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fire_(model, alpha=0)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


@pytest.mark.parametrize("alpha", [-0.1, 1.5, True, "1", float("nan")])
def test_fire_refuses_an_alpha_outside_zero_one(alpha) -> None:
    layer = nn.Linear(3, 3)
    w = layer.weight.detach().clone()
    with pytest.raises(ValueError, match=r"alpha=.* must be a number in \[0, 1\]"):
        fire_(layer, alpha=alpha)
    assert torch.equal(layer.weight, w)


def test_a_weight_two_layers_share_is_changed_once() -> None:
    """Shrink & Perturb shrank a shared weight once per layer (lambda squared), and FIRE mixed it twice."""
    torch.manual_seed(0)
    first, second = nn.Linear(4, 4), nn.Linear(4, 4)
    second.weight = first.weight  # tied, as in a weight-shared block
    model = nn.Sequential(first, nn.ReLU(), second)
    w = first.weight.detach().clone()
    assert shrink_perturb_(model, shrink=0.5, sigma=0.0) == 3  # the shared weight and two biases
    assert torch.equal(first.weight, 0.5 * w)
    reference = nn.Linear(4, 4, bias=False)
    with torch.no_grad():
        reference.weight.copy_(first.weight)
    assert fire_(model, alpha=0.5) == ["0.weight"]
    fire_(reference, alpha=0.5)
    assert torch.equal(first.weight, reference.weight)
