"""Parametrized layers (torch.nn.utils.parametrize): never run, never shrunk, accurately reported; the baselines
change them where their weights are stored, or refuse."""

from __future__ import annotations

import copy
import re
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations, parametrize

from torch_dash_optim import DASHWrapper
from torch_dash_optim.baselines import fire_, reset_last_layer_, shrink_perturb_

PARAMETRIZE = {
    "spectral_norm": parametrizations.spectral_norm,
    "weight_norm": parametrizations.weight_norm,
    "orthogonal": parametrizations.orthogonal,
}


def _model(kind: str) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 3))
    PARAMETRIZE[kind](model[0])
    return model.train()


def _data(n: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(n)]


@pytest.mark.parametrize("kind", sorted(PARAMETRIZE))
def test_wrapping_and_a_failed_call_leave_training_bit_identical(kind: str) -> None:
    model = _model(kind)
    bare_model = copy.deepcopy(model)
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss())
    with pytest.raises(ValueError, match="no batch"):
        opt.on_new_data([])
    assert all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())  # no power iteration ran
    bare = torch.optim.SGD(bare_model.parameters(), lr=0.1)
    for (x, y) in _data():
        for m, o in ((model, opt), (bare_model, bare)):
            o.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
            o.step()
    for (n, p), (_, q) in zip(model.state_dict().items(), bare_model.state_dict().items(), strict=True):
        assert torch.equal(p, q), n


@pytest.mark.parametrize("kind", sorted(PARAMETRIZE))
def test_parametrized_originals_are_skipped_with_an_accurate_reason(kind: str) -> None:
    model = _model(kind)
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss())
    originals = {n: p.detach().clone() for n, p in model.named_parameters() if "parametrizations" in n}
    report = opt.on_new_data(_data())
    assert originals
    for name, value in originals.items():
        assert report.skipped[name].startswith("original of a parametrized weight")
        assert torch.equal(dict(model.named_parameters())[name], value)
    assert {p.name for p in report.params} == {"0.bias", "2.weight", "2.bias"}


# -- issue 25: the warm-starting baselines on parametrized layers -------------------------------------
#
# Under torch.nn.utils.parametrize (and the hook-based weight_norm/spectral_norm) module.weight is
# recomputed on every access: shrink_perturb_, fire_ and reset_last_layer_ wrote into that temporary
# tensor, counted it as done, and the layer never changed.


def _old_weight_norm(module: nn.Module, dim: int | None = 0) -> nn.Module:
    with warnings.catch_warnings():  # torch deprecates the hook-based API in favour of parametrizations
        warnings.simplefilter("ignore")
        return torch.nn.utils.weight_norm(module, dim=dim)


#: Weight normalisation, by both APIs and over each choice of norm (per output unit, whole tensor, per input).
WEIGHT_NORMS = {
    "parametrizations-dim0": lambda m: parametrizations.weight_norm(m, dim=0),
    "parametrizations-whole": lambda m: parametrizations.weight_norm(m, dim=None),
    "parametrizations-dim1": lambda m: parametrizations.weight_norm(m, dim=1),
    "hook-dim0": _old_weight_norm,
    "hook-whole": lambda m: _old_weight_norm(m, dim=None),
}


class _Doubled(nn.Module):
    """A parametrization of one's own, without a right_inverse."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x


def _hook_spectral_norm(m: nn.Module) -> nn.Module:
    return torch.nn.utils.spectral_norm(m)


#: Parametrizations a shrink or FIRE cannot get through, with the words of the refusal.
UNREACHABLE = {
    "spectral_norm": (parametrizations.spectral_norm, "spectral_norm, which divides it by its largest singular"),
    "orthogonal": (parametrizations.orthogonal, "orthogonal, which keeps every singular value at 1"),
    "hook-spectral_norm": (_hook_spectral_norm, "forward pre-hook of torch.nn.utils.spectral_norm"),
    "own": (lambda m: parametrize.register_parametrization(m, "weight", _Doubled()), "parametrization _Doubled"),
}


def _layers(kind, seed: int = 0) -> nn.Module:
    """A conv and two linear layers, the parametrization on the conv and the last linear."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(16, 6), nn.ReLU(), nn.Linear(6, 5))
    if kind is not None:
        kind(model[0])
        kind(model[4])
    return model


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weight each layer computes (after a forward, which the hook-based weight_norm needs to recompute it)."""
    with torch.no_grad():
        model.eval()(torch.zeros(1, 2, 4, 4))
        return {n: model[int(n[0])].weight.detach().clone() for n in ("0.weight", "2.weight", "4.weight")}


def _plain_twin(model: nn.Module) -> nn.Module:
    """The same layers as plain parameters, holding the weights ``model`` computes."""
    twin = _layers(None)
    with torch.no_grad():
        for name, w in _weights(model).items():
            twin[int(name[0])].weight.copy_(w)
            twin[int(name[0])].bias.copy_(model[int(name[0])].bias)
    return twin


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: t.detach().clone() for n, t in model.state_dict().items()}


@pytest.mark.parametrize("kind", sorted(WEIGHT_NORMS))
@pytest.mark.parametrize("sigma", [0.0, 0.01])
def test_shrink_perturb_changes_a_weight_normalised_layer_as_a_plain_one(kind: str, sigma: float) -> None:
    model = _layers(WEIGHT_NORMS[kind])
    twin = _plain_twin(model)
    originals = [(n, p) for n, p in model.named_parameters() if n.startswith("4.") and n != "4.bias"]
    v_norms = {n: p.detach().norm() for n, p in originals}
    count = shrink_perturb_(model, shrink=0.4, sigma=sigma, generator=torch.Generator().manual_seed(3))
    assert count == shrink_perturb_(twin, shrink=0.4, sigma=sigma, generator=torch.Generator().manual_seed(3)) == 6
    for name, w in _weights(model).items():  # the layers compute what the plain twin holds: the same draws
        torch.testing.assert_close(w, _weights(twin)[name], rtol=1e-5, atol=1e-6)
    for name in ("0.bias", "2.bias", "4.bias"):
        torch.testing.assert_close(dict(model.named_parameters())[name], dict(twin.named_parameters())[name])
    if sigma == 0:  # scaling W is scaling g: v is not touched
        for name, p in originals:
            if name.endswith(("original1", "weight_v")):
                assert torch.equal(p.detach().norm(), v_norms[name])


@pytest.mark.parametrize("kind", sorted(WEIGHT_NORMS))
@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_fire_changes_a_weight_normalised_layer_as_a_plain_one(kind: str, alpha: float) -> None:
    model = _layers(WEIGHT_NORMS[kind])
    twin = _plain_twin(model)
    params = list(model.parameters())
    assert fire_(model, alpha=alpha) == fire_(twin, alpha=alpha) == ["0.weight", "2.weight", "4.weight"]
    for name, w in _weights(model).items():
        torch.testing.assert_close(w, _weights(twin)[name], rtol=1e-5, atol=1e-6)
    assert [id(p) for p in model.parameters()] == [id(p) for p in params]  # the optimizer's tensors


@pytest.mark.parametrize("kind", sorted(UNREACHABLE))
@pytest.mark.parametrize("method", ["shrink_perturb_", "fire_"])
def test_shrink_perturb_and_fire_refuse_what_they_cannot_reach_and_change_nothing(kind: str, method: str) -> None:
    make, words = UNREACHABLE[kind]
    model = _layers(make).train()  # train mode: reading spectral_norm's weight would move _u/_v
    before = _state(model)
    call = {"shrink_perturb_": lambda: shrink_perturb_(model), "fire_": lambda: fire_(model)}[method]
    with pytest.raises(ValueError, match=rf"^{method} cannot change 0\.weight: .*{re.escape(words)}.*remove"):
        call()
    after = _state(model)
    assert after.keys() == before.keys() and all(torch.equal(after[n], before[n]) for n in before)


def _fresh(kind, seed: int) -> nn.Module:
    """The last layer built afresh under ``seed``: Linear(6, 5) then the parametrization."""
    torch.manual_seed(seed)
    layer = nn.Linear(6, 5)
    return kind(layer) if kind is not None else layer


RESETTABLE = {
    **WEIGHT_NORMS,
    "spectral_norm": parametrizations.spectral_norm,
    "orthogonal": parametrizations.orthogonal,
    "orthogonal-householder": lambda m: parametrizations.orthogonal(m, orthogonal_map="householder"),
}


@pytest.mark.parametrize("kind", sorted(RESETTABLE))
def test_reset_last_layer_makes_a_parametrized_layer_as_freshly_built(kind: str) -> None:
    model = _layers(RESETTABLE[kind]).eval()
    first = _state(model[0])
    params = list(model.parameters())
    torch.manual_seed(11)
    assert reset_last_layer_(model) == ["4"]
    fresh = _fresh(RESETTABLE[kind], 11).eval()
    for (n, t), (m, u) in zip(model[4].state_dict().items(), fresh.state_dict().items(), strict=True):
        assert n == m and torch.equal(t, u), n  # originals, g and v, _u/_v: all as registered afresh
    with torch.no_grad():
        model(torch.zeros(1, 2, 4, 4))  # the hook-based weight_norm computes its weight in forward
        fresh(torch.zeros(1, 6))
        assert torch.equal(model[4].weight, fresh.weight)
    assert all(torch.equal(t, first[n]) for n, t in model[0].state_dict().items())  # only the last layer
    assert [id(p) for p in model.parameters()] == [id(p) for p in params]


@pytest.mark.parametrize("kind", ["hook-spectral_norm", "own"])
def test_reset_last_layer_refuses_what_it_cannot_reinitialise_and_changes_nothing(kind: str) -> None:
    make, words = UNREACHABLE[kind]
    model = _layers(make)
    before = _state(model)
    with pytest.raises(ValueError, match=rf"^reset_last_layer_ cannot change 4\.weight: .*{re.escape(words)}"):
        reset_last_layer_(model)
    after = _state(model)
    assert all(torch.equal(after[n], before[n]) for n in before)


def test_a_plain_model_is_changed_exactly_as_before() -> None:
    """The parameters of plain layers are still changed in place, bit for bit as the published formulas say."""
    model = _layers(None)
    w = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert shrink_perturb_(model, shrink=0.5, sigma=0.0) == 6
    assert all(torch.equal(p, 0.5 * w[n]) for n, p in model.named_parameters())
