"""Parametrized layers (torch.nn.utils.parametrize): never run, never shrunk, accurately reported."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations

from torch_dash_optim import DASHWrapper

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
