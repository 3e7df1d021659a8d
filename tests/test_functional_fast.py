"""The fast paths: grouped factors (functional.dash_factors_many), and the EMA over many batches (gather)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as TF
from _reference import ema_of_negative_gradients, factors_reference
from _strategies import unit_cases
from hypothesis import given, settings, target
from torch import nn

from torch_dash_optim import functional as F
from torch_dash_optim.gather import gather_direction

#: Mostly contiguous float32 tensors, which take the grouped fast path; the rest fall back.
FAST_DTYPES = (torch.float32, torch.float32, torch.float32, torch.float64, torch.bfloat16)
FAST_LAYOUTS = ("contiguous", "contiguous", "contiguous", "transposed", "strided")


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


@settings(max_examples=100, deadline=None)
@given(unit_cases(max_size=5, dtypes=FAST_DTYPES, layouts=FAST_LAYOUTS))
def test_grouped_factors_equal_an_independent_float64_reference(cases):
    """Every tensor of the group (fast path or fallback) gets clamp(cos, its lambd, 1) per unit."""
    ws, ds = [c.w for c in cases], [c.d for c in cases]
    dims, lambds = [c.dims for c in cases], [c.lambd for c in cases]
    got = F.dash_factors_many(ws, ds, dims, lambds)
    assert len(got) == len(cases)
    between = []
    for c, f in zip(cases, got, strict=True):
        ref = factors_reference(c.w, c.d, c.dims, c.lambd)
        assert f.dtype == torch.float32 and f.shape == ref.shape
        assert bool((f >= torch.tensor(c.lambd, dtype=torch.float32)).all()) and bool((f <= 1.0).all())
        torch.testing.assert_close(f.double(), ref, atol=1e-5, rtol=0)
        torch.testing.assert_close(f, F.dash_factors(c.w, c.d, c.dims, c.lambd), rtol=2e-6, atol=2e-6)
        between.append(float(((ref > c.lambd + 1e-6) & (ref < 1 - 1e-6)).double().mean()))
    target(sum(between) / len(between), label="units strictly between the floor and 1")


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


@pytest.fixture
def one_thread():
    """Hundreds of tiny forward/backward passes: one intra-op thread (two threads that spin on a
    loaded 2-core machine made them up to 30x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _mlp_and_batches(n, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).eval()
    g = torch.Generator().manual_seed(seed + 1)
    data = [(torch.randn(4, 5, generator=g), torch.randint(0, 3, (4,), generator=g)) for _ in range(n)]
    return model, data


@pytest.mark.parametrize(
    ("alpha", "loss_scale"),
    [
        (0.3, 1.0),  # the default alpha: 0.7**399 ~ 1e-62, far below float32's range
        (0.3, 1e14),  # large but healthy gradients (~1e13)
        (0.05, 1.0),  # slow decay
    ],
)
@pytest.mark.usefixtures("one_thread")
def test_ema_over_400_batches_matches_an_exact_float64_ema(alpha, loss_scale):
    """400 healthy batches: no NonFiniteGradientError, and the EMA computed in float64."""
    model, data = _mlp_and_batches(400)
    params = list(model.parameters())
    ref_model = copy.deepcopy(model).double()

    def loss64(out, y):
        return loss_scale * TF.cross_entropy(out, y)

    expected = ema_of_negative_gradients(ref_model, data, loss64, list(ref_model.parameters()), alpha)
    res = gather_direction(
        params, data, lambda b: loss_scale * TF.cross_entropy(model(b[0]), b[1]), alpha=alpha, model=model
    )
    assert res.num_batches == 400
    for d, e in zip(res.directions, expected, strict=True):
        assert d.dtype == torch.float32 and bool(torch.isfinite(d).all())
        scale = e.abs().max().item()
        assert scale > 0
        torch.testing.assert_close(d.double(), e, rtol=1e-4, atol=1e-5 * scale)
    assert all(p.grad is None for p in params)


@pytest.mark.usefixtures("one_thread")
def test_every_batch_is_backpropagated_at_its_own_scale():
    """A hook on the loss sees d(loss)/d(loss) = 1 on every batch: the loss is never rescaled."""
    model, data = _mlp_and_batches(50)
    weights = []

    def loss(b):
        value = TF.cross_entropy(model(b[0]), b[1])
        value.register_hook(lambda grad: weights.append(grad.item()))
        return value

    gather_direction(list(model.parameters()), data, loss, alpha=0.3, model=model)
    assert weights == [1.0] * 50


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

    passes, res = _count_decay_passes(monkeypatch, params, data, loss32)
    assert passes == len(data)  # a decay before each of the 3 later batches, then the final scaling
    for d, e in zip(res.directions, expected, strict=True):
        torch.testing.assert_close(d, e)

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


@pytest.mark.parametrize(
    ("shape", "dims"),
    [
        ((16, 48), (0,)),  # GPT-2's Conv1D weight (in, out): one unit per column
        ((3000, 50), (0,)),  # columns summed over several chunks of rows
        ((7, 70000), (0,)),  # more columns than a chunk holds
        ((300, 300), (0, 1)),  # one unit larger than a chunk: summed by columns, chunk by chunk
        ((4, 6, 3), (0, 1)),  # leading dims of a 3-D tensor
    ],
)
def test_units_over_the_leading_dims_take_the_fast_path(shape, dims, monkeypatch):
    g = torch.Generator().manual_seed(2)
    w, d = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    d.view(-1)[: w.numel() // 2] = w.view(-1)[: w.numel() // 2]
    fallback = []
    real = F.dash_factors
    monkeypatch.setattr(F, "dash_factors", lambda *a, **k: fallback.append(a) or real(*a, **k))
    (f,) = F.dash_factors_many([w], [d], [dims], 0.1)
    assert fallback == []  # no fallback: the fast path took it
    torch.testing.assert_close(f, _reference(w, d, dims, 0.1), rtol=2e-6, atol=2e-6)


def test_grouped_factors_with_blocks_of_dim_0_equal_the_plain_function():
    g = torch.Generator().manual_seed(3)
    shapes_dims_groups = [((24,), (0,), 3), ((24, 8), (0, 1), 3), ((24, 8), (1,), 3), ((4, 3, 2, 2), (0, 2, 3), 2)]
    ws = [torch.randn(s, generator=g) for s, _, _ in shapes_dims_groups]
    ds = [torch.randn(s, generator=g) for s, _, _ in shapes_dims_groups]
    dims = [dm for _, dm, _ in shapes_dims_groups]
    groups = [k for _, _, k in shapes_dims_groups]
    got = F.dash_factors_many(ws, ds, dims, 0.0, groups=groups)
    for w, d, dm, k, f in zip(ws, ds, dims, groups, got, strict=True):
        torch.testing.assert_close(f, F.dash_factors(w, d, dm, 0.0, groups=k), rtol=2e-6, atol=2e-6)
        w.mul_(f)  # each broadcasts against its weight
    with pytest.raises(ValueError, match="got 1 weights but 2 groups"):
        F.dash_factors_many(ws[:1], ds[:1], dims[:1], 0.3, groups=[1, 1])
