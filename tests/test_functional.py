"""Properties of the pure DASH math (torch_dash_optim.functional)."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
import torch
from _reference import factors_reference, unit_cosines
from _strategies import reduced_dims, unit_case
from hypothesis import assume, given, settings, target

from torch_dash_optim import functional as F

#: Property tests: enough examples to meet every kind of case, few enough for a 2-core CI machine.
PROPERTY = settings(max_examples=100, deadline=None)
#: The float32 cosine against the float64 one: float32 rounding of sums of up to 9**4 products.
COS_TOL = 1e-5


def _between(factors, lambd):
    """Fraction of units whose factor lies strictly between the floor and 1."""
    f = factors.double()
    return float(((f > lambd + 1e-6) & (f < 1 - 1e-6)).double().mean())


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


@pytest.mark.parametrize("granularity", ["kernel", "neuron", "tensor"])
@pytest.mark.parametrize("ndim", [1, 2, 3, 4, 5])
def test_unit_dims_agree_with_the_units_the_property_tests_draw(ndim, granularity):
    assert F.unit_dims(ndim, granularity) == reduced_dims(ndim, granularity)


@PROPERTY
@given(unit_case())
def test_cosine_matches_an_independent_float64_cosine(case):
    ours = F.cosine_per_unit(case.w, case.d, case.dims)
    ref = unit_cosines(case.w, case.d, case.dims)
    assert ours.dtype == torch.float32 and ours.shape == ref.shape
    target(_between(ref.clamp(case.lambd, 1.0), case.lambd), label="units strictly between the floor and 1")
    torch.testing.assert_close(ours.double(), ref, atol=COS_TOL, rtol=0)


@PROPERTY
@given(unit_case())
def test_factors_are_the_clamped_independent_cosine(case):
    f = F.dash_factors(case.w, case.d, case.dims, case.lambd)
    ref = factors_reference(case.w, case.d, case.dims, case.lambd)
    assert f.dtype == torch.float32 and f.shape == ref.shape  # one factor per unit, broadcastable
    floor = torch.tensor(case.lambd, dtype=torch.float32)
    assert bool((f >= floor).all()) and bool((f <= 1.0).all())  # exactly in [lambd, 1]
    target(_between(ref, case.lambd), label="units strictly between the floor and 1")
    torch.testing.assert_close(f.double(), ref, atol=COS_TOL, rtol=0)
    # The floor only clamps: lambd=0 gives the cosine's positive part, and lambd raises it.
    torch.testing.assert_close(f, F.dash_factors(case.w, case.d, case.dims, 0.0).clamp_min(floor), atol=0, rtol=0)


@PROPERTY
@given(unit_case(dtypes=(torch.float32, torch.float64), special=False), st.floats(1e-3, 1e3))
def test_parallel_unit_keeps_one_antiparallel_gets_lambda(case, scale):
    w = case.w
    parallel = (scale * w.double()).to(w.dtype)
    for x in (w, parallel):  # every unit's norm well above eps (cos(x, x) is |x|**2 / eps**2 below it)
        assume(float(unit_cosines(x, x, case.dims).min()) > 1 - 1e-9)
    ones = F.dash_factors(w, parallel, case.dims, case.lambd)
    torch.testing.assert_close(ones, torch.ones_like(ones), atol=1e-6, rtol=0)
    floored = F.dash_factors(w, (-scale * w.double()).to(w.dtype), case.dims, case.lambd)
    assert torch.equal(floored, torch.full_like(floored, torch.tensor(case.lambd, dtype=torch.float32).item()))


@PROPERTY
@given(unit_case(dtypes=(torch.float32,), special=False), st.integers(-20, 20))
def test_factors_invariant_to_positive_scaling_of_the_gradient(case, k):
    """Scaling by a power of two is exact in floating point, so the factors are bit-identical."""
    d = case.d
    norms = unit_cosines(d, d, case.dims)  # 1 where the unit's norm is above eps
    small = float(torch.linalg.vector_norm(d.double().flatten(), ord=-float("inf")))
    assume(bool((norms > 0.5).all()) and small * 2.0 ** min(k, 0) > 1e-6)
    # d * 1.0 and d * 2**k have the same memory layout, so the same summation order.
    scaled = F.dash_factors(case.w, d * 2.0**k, case.dims, case.lambd)
    assert torch.equal(scaled, F.dash_factors(case.w, d * 1.0, case.dims, case.lambd))


@PROPERTY
@given(unit_case())
def test_shrink_scales_each_unit_by_its_clamped_cosine(case):
    """The shrink multiplies each unit by clamp(cos, lambd, 1) in place: norm scaled, direction and layout kept."""
    w = case.w
    before = w.detach().double().clone()  # .double() of a float64 tensor is the tensor itself
    stride, ptr = w.stride(), w.data_ptr()
    F.shrink_([w], [F.dash_factors(w, case.d, case.dims, case.lambd)])
    assert w.stride() == stride and w.data_ptr() == ptr
    ref = factors_reference(before, case.d, case.dims, case.lambd)
    target(_between(ref, case.lambd), label="units strictly between the floor and 1")
    info = torch.finfo(w.dtype)  # one rounding of the product to w's dtype, subnormals included
    error = (w.double() - before * ref).abs()
    bound = (COS_TOL + info.eps) * before.abs() + info.smallest_normal * info.eps
    assert bool((error <= bound).all()), float((error / bound).max())


def test_zero_gradient_gives_lambda():
    w = torch.randn(3, 4)
    assert torch.equal(F.dash_factors(w, torch.zeros(3, 4), (1,), 0.25), torch.full((3, 1), 0.25))


def test_channels_last_and_bf16_are_handled_in_float32():
    w = torch.randn(4, 3, 3, 3).to(memory_format=torch.channels_last)
    d = torch.randn(4, 3, 3, 3)
    ref = F.dash_factors(w.contiguous(), d, (2, 3), 0.3)
    torch.testing.assert_close(F.dash_factors(w, d, (2, 3), 0.3), ref)
    torch.testing.assert_close(ref.double(), factors_reference(w, d, (2, 3), 0.3), atol=COS_TOL, rtol=0)
    wb, db = w.to(torch.bfloat16), d.to(torch.bfloat16)
    fb = F.dash_factors(wb, db, (2, 3), 0.3)
    assert fb.dtype == torch.float32
    # The bfloat16 values' own cosine, in float64: not the float32 tensors' (which differ by ~1e-2).
    torch.testing.assert_close(fb.double(), factors_reference(wb, db, (2, 3), 0.3), atol=COS_TOL, rtol=0)
    assert not torch.allclose(fb, ref, atol=1e-4, rtol=0)
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


def test_unit_dims_along_another_axis():
    assert F.unit_dims(2, axis=1) == (0,)  # a weight stored (in, out): per column
    assert F.unit_dims(2, "neuron", axis=-1) == (0,)
    assert F.unit_dims(4, axis=1) == (2, 3)  # ConvTranspose2d (in, out, k, k): per kernel slice
    assert F.unit_dims(4, "neuron", axis=1) == (0, 2, 3)  # per output filter
    assert F.unit_dims(4, "tensor", axis=1) == (0, 1, 2, 3)
    assert F.unit_dims(3, "kernel", axis=2) == (0, 1)  # no kernel slice along a third axis: per slice
    assert F.unit_dims(1, "kernel", axis=None) == (0,)
    assert F.unit_dims(2, "neuron", axis=None) == (0, 1)  # the whole tensor, whatever the granularity
    with pytest.raises(ValueError, match="axis=2 is not a dimension of a 2-dim tensor"):
        F.unit_dims(2, axis=2)


def test_groups_cut_units_at_the_blocks_of_dim_0():
    g = torch.Generator().manual_seed(0)
    w, d = torch.randn(12, generator=g), torch.randn(12, generator=g)
    f = F.dash_factors(w, d, (0,), 0.0, groups=3)
    assert f.shape == (12,)  # repeated within each block: it broadcasts against the tensor
    for k in range(3):
        block = slice(4 * k, 4 * k + 4)
        ref = factors_reference(w[block], d[block], (0,), 0.0).float()
        torch.testing.assert_close(f[block], ref.expand(4), rtol=2e-6, atol=2e-6)
    # a 4-D weight (in, out/g, k, k) of a grouped ConvTranspose: per output channel of each group
    w, d = torch.randn(4, 3, 2, 2, generator=g), torch.randn(4, 3, 2, 2, generator=g)
    f = F.dash_factors(w, d, (0, 2, 3), 0.0, groups=2)
    assert f.shape == (4, 3, 1, 1)
    for block in (slice(0, 2), slice(2, 4)):
        ref = factors_reference(w[block], d[block], (0, 2, 3), 0.0).float()
        torch.testing.assert_close(f[block], ref.expand(2, 3, 1, 1), rtol=2e-6, atol=2e-6)
    # units that lie within a row of dim 0 do not care about the blocks
    assert torch.equal(F.dash_factors(w, d, (2, 3), 0.3, groups=2), F.dash_factors(w, d, (2, 3), 0.3))
    w.mul_(f)  # broadcasts
    with pytest.raises(ValueError, match=r"groups=5 does not divide dim 0 of a tensor of shape \(4, 3, 2, 2\)"):
        F.dash_factors(w, d, (0,), 0.3, groups=5)
    with pytest.raises(ValueError, match="groups must be a positive int"):
        F.cosine_per_unit(w, d, (0,), groups=0)
