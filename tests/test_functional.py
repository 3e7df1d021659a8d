"""Properties of the pure DASH math (torch_dash_optim.functional)."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings

from torch_dash_optim import functional as F

SHAPES = st.sampled_from([(7,), (4, 5), (3, 2, 3), (4, 3, 2, 2), (2, 3, 2, 1, 2)])
GRANS = st.sampled_from(F.GRANULARITIES)
LAMBD = st.floats(0.0, 1.0)
SEEDS = st.integers(0, 2**31 - 1)


def _pair(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)


def _reference_cos(w, d, dims):
    """torch's own cosine_similarity on the unit view (the authors' semantics)."""
    kept = [i for i in range(w.ndim) if i not in dims]
    perm = kept + list(dims)
    shape = [w.shape[i] for i in kept]
    wv = w.permute(perm).reshape(*shape, -1) if kept else w.reshape(1, -1)
    dv = d.permute(perm).reshape(*shape, -1) if kept else d.reshape(1, -1)
    return TF.cosine_similarity(dv, wv, dim=-1, eps=1e-8)


def test_unit_dims_follow_the_paper():
    assert F.unit_dims(4) == (2, 3)  # Conv2d: per (out, in) kernel slice
    assert F.unit_dims(3) == (2,)  # Conv1d
    assert F.unit_dims(5) == (2, 3, 4)  # Conv3d
    assert F.unit_dims(2) == (1,)  # Linear: per row
    assert F.unit_dims(1) == (0,)  # bias: whole vector
    assert F.unit_dims(4, "neuron") == (1, 2, 3)
    assert F.unit_dims(2, "neuron") == (1,)
    assert F.unit_dims(4, "tensor") == (0, 1, 2, 3)
    with pytest.raises(ValueError, match="unknown granularity 'row'"):
        F.unit_dims(2, "row")
    with pytest.raises(ValueError, match="0-dim"):
        F.unit_dims(0)


@settings(max_examples=60, deadline=None)
@given(SHAPES, GRANS, SEEDS)
def test_cosine_matches_torch_cosine_similarity(shape, gran, seed):
    w, d = _pair(shape, seed)
    dims = F.unit_dims(len(shape), gran)
    ours = F.cosine_per_unit(w, d, dims)
    ref = _reference_cos(w, d, dims)
    torch.testing.assert_close(ours.reshape(ref.shape), ref, atol=2e-6, rtol=0)


@settings(max_examples=80, deadline=None)
@given(SHAPES, GRANS, LAMBD, SEEDS)
def test_factors_lie_in_lambda_one(shape, gran, lambd, seed):
    w, d = _pair(shape, seed)
    f = F.dash_factors(w, d, F.unit_dims(len(shape), gran), lambd)
    assert f.dtype == torch.float32
    assert bool((f >= torch.tensor(lambd, dtype=torch.float32)).all()) and bool((f <= 1.0).all())


@settings(max_examples=60, deadline=None)
@given(SHAPES, GRANS, LAMBD, SEEDS, st.floats(0.01, 100.0))
def test_parallel_unit_keeps_one_antiparallel_gets_lambda(shape, gran, lambd, seed, scale):
    w, _ = _pair(shape, seed)
    dims = F.unit_dims(len(shape), gran)
    assert torch.allclose(F.dash_factors(w, scale * w, dims, lambd), torch.ones(()), atol=1e-5)
    floor = torch.tensor(lambd, dtype=torch.float32)
    assert torch.equal(F.dash_factors(w, -scale * w, dims, lambd), floor.expand_as(F.dash_factors(w, w, dims, 0)))


@settings(max_examples=60, deadline=None)
@given(SHAPES, GRANS, LAMBD, SEEDS, st.floats(1e-3, 1e3))
def test_factors_invariant_to_positive_scaling_of_the_gradient(shape, gran, lambd, seed, scale):
    w, d = _pair(shape, seed)
    dims = F.unit_dims(len(shape), gran)
    scaled = F.dash_factors(w, d * scale, dims, lambd)
    torch.testing.assert_close(scaled, F.dash_factors(w, d, dims, lambd), atol=2e-6, rtol=0)


@settings(max_examples=40, deadline=None)
@given(SHAPES, GRANS, SEEDS)
def test_lambda_one_changes_nothing(shape, gran, seed):
    w, d = _pair(shape, seed)
    before = w.clone()
    F.shrink_([w], [F.dash_factors(w, d, F.unit_dims(len(shape), gran), 1.0)])
    assert torch.equal(w, before)


@settings(max_examples=60, deadline=None)
@given(SHAPES, GRANS, LAMBD, SEEDS)
def test_each_unit_is_only_scaled(shape, gran, lambd, seed):
    w, d = _pair(shape, seed)
    dims = F.unit_dims(len(shape), gran)
    before = w.clone()
    f = F.dash_factors(w, d, dims, lambd)
    F.shrink_([w], [f])
    torch.testing.assert_close(w, before * f)  # factor broadcasts over exactly one unit
    # Direction unchanged: the cosine between each unit before and after is 1 (unless zeroed).
    cos = F.cosine_per_unit(before, w, dims)
    alive = f > 1e-6
    torch.testing.assert_close(cos[alive], torch.ones_like(cos[alive]), atol=1e-5, rtol=0)


def test_zero_gradient_gives_lambda():
    w = torch.randn(3, 4)
    assert torch.equal(F.dash_factors(w, torch.zeros(3, 4), (1,), 0.25), torch.full((3, 1), 0.25))


def test_channels_last_and_bf16_are_handled_in_float32():
    w = torch.randn(4, 3, 3, 3).to(memory_format=torch.channels_last)
    d = torch.randn(4, 3, 3, 3)
    ref = F.dash_factors(w.contiguous(), d, (2, 3), 0.3)
    torch.testing.assert_close(F.dash_factors(w, d, (2, 3), 0.3), ref)
    wb, db = w.to(torch.bfloat16), d.to(torch.bfloat16)
    fb = F.dash_factors(wb, db, (2, 3), 0.3)
    assert fb.dtype == torch.float32
    torch.testing.assert_close(fb, F.dash_factors(wb.float(), db.float(), (2, 3), 0.3))
    before = w.clone()
    F.shrink_([w], [ref])
    assert w.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(w, before * ref)


def test_shrink_keeps_tensor_identity_and_checks_lengths():
    w = torch.nn.Parameter(torch.ones(2, 2))
    ptr = w.data_ptr()
    F.shrink_([w], [torch.tensor([[0.5], [1.0]])])
    assert w.data_ptr() == ptr and w.tolist() == [[0.5, 0.5], [1.0, 1.0]]
    with pytest.raises(ValueError, match="1 tensors but 2 factors"):
        F.shrink_([w], [torch.ones(1), torch.ones(1)])


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match=r"shapes differ: \(2, 3\) and \(3, 2\)"):
        F.cosine_per_unit(torch.ones(2, 3), torch.ones(3, 2), (1,))
