"""The fast paths: grouped factors (functional.dash_factors_many) and the folded EMA decay (gather)."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from torch import nn

from torch_dash_optim import functional as F
from torch_dash_optim import gather_direction
from torch_dash_optim.gather import _MAX_LOSS_WEIGHT, _fold_decay

SHAPES = st.sampled_from([(7,), (4, 5), (3, 70), (3, 2, 3), (4, 3, 2, 2), (2, 3, 9, 9), (2, 3, 2, 1, 2)])
GRANS = st.sampled_from(F.GRANULARITIES)


def _reference(w, d, dims, lambd):
    """clamp(torch.nn.functional.cosine_similarity, lambd, 1) on the unit view, kept dims of size 1."""
    kept = [i for i in range(w.ndim) if i not in dims]
    perm = kept + list(dims)
    shape = [w.shape[i] for i in kept]
    wv = w.permute(perm).reshape(*shape, -1) if kept else w.reshape(1, -1)
    dv = d.permute(perm).reshape(*shape, -1) if kept else d.reshape(1, -1)
    cos = TF.cosine_similarity(dv.double(), wv.double(), dim=-1, eps=1e-8).float()
    out_shape = [1 if i in dims else s for i, s in enumerate(w.shape)]
    return cos.clamp(lambd, 1.0).reshape(out_shape)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(SHAPES, GRANS), min_size=1, max_size=5), st.integers(0, 2**31 - 1), st.floats(0.0, 1.0)
)
def test_grouped_factors_equal_cosine_similarity_reference(specs, seed, lambd):
    g = torch.Generator().manual_seed(seed)
    ws = [torch.randn(s, generator=g) for s, _ in specs]
    ds = [torch.randn(s, generator=g) for s, _ in specs]
    dims = [F.unit_dims(len(s), gran) for s, gran in specs]
    got = F.dash_factors_many(ws, ds, dims, lambd)
    assert len(got) == len(ws)
    for w, d, dm, f in zip(ws, ds, dims, got, strict=True):
        assert f.dtype == torch.float32
        torch.testing.assert_close(f, _reference(w, d, dm, lambd), rtol=2e-6, atol=2e-6)
        torch.testing.assert_close(f, F.dash_factors(w, d, dm, lambd), rtol=2e-6, atol=2e-6)


def test_per_tensor_lambds_zero_directions_and_fallback_layouts():
    conv = torch.randn(6, 4, 3, 3)
    last = conv.clone().to(memory_format=torch.channels_last)  # non-contiguous: general path
    lin64 = torch.randn(5, 80, dtype=torch.float64)  # not float32: general path
    bias = torch.randn(6)
    ws = [conv, last, lin64, bias]
    ds = [torch.zeros_like(conv), torch.randn_like(last), torch.randn_like(lin64), -bias]
    dims = [(2, 3), (2, 3), (1,), (0,)]
    lambds = [0.1, 0.2, 0.3, 0.4]
    got = F.dash_factors_many(ws, ds, dims, lambds)
    assert torch.equal(got[0], torch.full((6, 4, 1, 1), 0.1))  # a zero direction gives lambd
    for w, d, dm, lam, f in zip(ws[1:], ds[1:], dims[1:], lambds[1:], got[1:], strict=True):
        torch.testing.assert_close(f, _reference(w, d, dm, lam), rtol=2e-6, atol=2e-6)
    assert got[3].item() == pytest.approx(0.4)  # opposed bias floored at its own lambd
    lin64.mul_(got[2])  # factors broadcast against their weight
    last.mul_(got[1])


def test_grouped_factors_need_no_grad_mode_and_refuse_mismatches():
    w = nn.Parameter(torch.randn(3, 4))
    f = F.dash_factors_many([w], [torch.randn(3, 4)], [(1,)], 0.3)[0]
    assert not f.requires_grad and f.shape == (3, 1)
    with pytest.raises(ValueError, match="got 1 weights, 2 directions"):
        F.dash_factors_many([w], [w, w], [(1,)], 0.3)
    with pytest.raises(ValueError, match="got 1 weights but 2 lambds"):
        F.dash_factors_many([w], [w], [(1,)], [0.3, 0.4])
    with pytest.raises(ValueError, match=r"tensor 0: shapes differ: \(3, 4\) and \(4, 3\)"):
        F.dash_factors_many([w], [torch.randn(4, 3)], [(1,)], 0.3)
    assert F.dash_factors_many([], [], [], 0.3) == []


def _ema_reference(model, data, params, alpha):
    expected = [torch.zeros_like(p) for p in params]
    for x, y in data:
        model.zero_grad()
        TF.cross_entropy(model(x), y).backward()
        expected = [(1 - alpha) * e + alpha * (-p.grad) for e, p in zip(expected, params, strict=True)]
    model.zero_grad(set_to_none=True)
    return expected


@pytest.mark.parametrize("alpha", [0.05, 0.3, 0.8])
def test_folded_decay_keeps_the_ema_over_many_batches(alpha):
    # Enough batches that the loss weight is renormalised several times.
    batches = int(4 * torch.log(torch.tensor(_MAX_LOSS_WEIGHT)) / -torch.log(torch.tensor(1 - alpha))) + 3
    batches = min(batches, 60)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).eval()
    data = [(torch.randn(4, 5), torch.randint(0, 3, (4,))) for _ in range(batches)]
    params = list(model.parameters())
    expected = _ema_reference(model, data, params, alpha)
    assert _fold_decay(1 - alpha, torch.device("cpu"), None)
    res = gather_direction(
        params, data, lambda b: TF.cross_entropy(model(b[0]), b[1]), alpha=alpha, model=model
    )
    assert res.num_batches == batches
    for d, e in zip(res.directions, expected, strict=True):
        torch.testing.assert_close(d, e, rtol=1e-5, atol=1e-7)
    assert all(p.grad is None for p in params)


def test_decay_is_not_folded_for_alpha_one_or_float16_autocast():
    cpu = torch.device("cpu")
    assert not _fold_decay(0.0, cpu, None)
    assert not _fold_decay(0.7, cpu, torch.float16)
    assert _fold_decay(0.7, cpu, torch.bfloat16)
    assert not _fold_decay(0.7, cpu, None, [torch.zeros(2, dtype=torch.float16)])
    assert _fold_decay(0.7, cpu, None, [torch.zeros(2, dtype=torch.bfloat16)])
    with torch.autocast("cpu", dtype=torch.float16):
        assert not _fold_decay(0.7, cpu, None)


@pytest.mark.parametrize(
    ("shape", "dims"),
    [
        ((1000, 100), (1,)),  # long rows split over two chunks
        ((300, 30, 3, 3), (2, 3)),  # short units (3x3 kernels) over many chunks
        ((300, 300), (0, 1)),  # one unit larger than a chunk
        ((70001,), (0,)),  # a long bias
    ],
)
def test_grouped_factors_across_chunk_boundaries(shape, dims):
    g = torch.Generator().manual_seed(1)
    w, d = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    d.view(-1)[: w.numel() // 2] = w.view(-1)[: w.numel() // 2]  # a mix of aligned and random units
    (f,) = F.dash_factors_many([w], [d], [dims], 0.1)
    torch.testing.assert_close(f, _reference(w, d, dims, 0.1), rtol=2e-6, atol=2e-6)


def _count_decay_passes(monkeypatch, params, data, loss, alpha=0.3):
    calls = []
    real = torch._foreach_mul_

    def counting(tensors, scalar):
        calls.append(scalar)
        return real(tensors, scalar)

    monkeypatch.setattr(torch, "_foreach_mul_", counting)
    res = gather_direction(params, data, loss, alpha=alpha)
    monkeypatch.undo()
    return len(calls), res


def test_float16_losses_and_parameters_decay_the_gradients_every_batch(monkeypatch):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).eval()
    data = [(torch.randn(4, 5), torch.randint(0, 3, (4,))) for _ in range(4)]
    params = list(model.parameters())
    expected = _ema_reference(model, data, params, 0.3)

    def loss32(b):
        return TF.cross_entropy(model(b[0]), b[1])

    folded, res = _count_decay_passes(monkeypatch, params, data, loss32)
    assert folded == 1  # only the final -alpha scaling: no pass per batch

    def loss16(b):
        return TF.cross_entropy(model(b[0]), b[1]).half()

    per_batch, res16 = _count_decay_passes(monkeypatch, params, data, loss16)
    assert per_batch == len(data)  # a decay before each of the 3 later batches, then the final scaling
    for d, e in zip(res16.directions, expected, strict=True):
        torch.testing.assert_close(d, e, rtol=1e-2, atol=1e-3)

    half = nn.Sequential(nn.Linear(5, 3)).half()
    hdata = [(x.half(), y) for x, y in data]
    n_half, _ = _count_decay_passes(
        monkeypatch, list(half.parameters()), hdata, lambda b: TF.cross_entropy(half(b[0]).float(), b[1])
    )
    assert n_half == len(data)
