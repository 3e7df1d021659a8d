"""Hypothesis strategies for the DASH math: weights and directions that exercise every case.

A :func:`unit_case` draws a shape (1 to 4 dimensions of size 1 to 9), a granularity, value
scales over twelve orders of magnitude, zero units and units whose norm is near the cosine's
``eps``, non-contiguous layouts (transposed, strided, channels_last), float16/bfloat16/float64
tensors and a floor in [0, 1]. The direction is constructed unit by unit with a chosen cosine to
the weight (the first unit and half of the others strictly between the floor and 1, the rest
anywhere in (-1, 1)), so the cosine itself is compared, not only the clamp.
"""

from __future__ import annotations

from dataclasses import dataclass

import hypothesis.strategies as st
import torch
from torch import Tensor

__all__ = ["UnitCase", "reduced_dims", "unit_case", "unit_cases"]

GRANULARITIES = ("kernel", "neuron", "tensor")
#: float32 most often (the fast paths), then the others.
DTYPES = (torch.float32, torch.float32, torch.float64, torch.float16, torch.bfloat16)
LAYOUTS = ("contiguous", "transposed", "strided", "channels_last")
EPS = 1e-8


def reduced_dims(ndim: int, granularity: str) -> tuple[int, ...]:
    """The dimensions one unit spans (README: kernel slice, row, filter, whole tensor; 1-D: whole)."""
    if ndim == 1 or granularity == "tensor":
        return tuple(range(ndim))
    if granularity == "neuron" or ndim == 2:
        return tuple(range(1, ndim))
    return tuple(range(2, ndim))


@dataclass
class UnitCase:
    """One drawn example."""

    w: Tensor
    d: Tensor
    dims: tuple[int, ...]
    lambd: float

    def __repr__(self) -> str:  # shown by Hypothesis on failure
        return (
            f"UnitCase(shape={tuple(self.w.shape)}, dims={self.dims}, lambd={self.lambd!r}, "
            f"w: {self.w.dtype} stride {self.w.stride()}, d: {self.d.dtype} stride {self.d.stride()},\n"
            f"w={self.w.tolist()},\nd={self.d.tolist()})"
        )


def _with_layout(x: Tensor, layout: str, perm: list[int]) -> Tensor:
    """``x`` with the same values and another memory layout."""
    if layout == "transposed" and x.ndim >= 2:
        inverse = [perm.index(i) for i in range(x.ndim)]
        return x.permute(*perm).contiguous().permute(*inverse)
    if layout == "strided":
        big = torch.zeros(*x.shape[:-1], 2 * x.shape[-1], dtype=x.dtype)
        big[..., ::2] = x
        return big[..., ::2]
    if layout == "channels_last" and x.ndim == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x.contiguous()


def _unit_norm(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    return x.pow(2).sum(dim=dims, keepdim=True).sqrt()


def _special_units(
    x: Tensor, g: torch.Generator, dims: tuple[int, ...], unit_shape: list[int], zero: float, near_eps: float
) -> Tensor:
    """Zero a fraction ``zero`` of the units (never the first one), and scale a fraction ``near_eps``
    of them to a norm within a decade of ``EPS``."""
    pick = torch.rand(unit_shape, generator=g, dtype=torch.float64)
    pick.view(-1)[0] = 0.5  # the first unit stays ordinary
    target = EPS * 10 ** (2 * torch.rand(unit_shape, generator=g, dtype=torch.float64) - 1)
    x = torch.where(pick < near_eps, x / _unit_norm(x, dims).clamp_min(1e-300) * target, x)
    return torch.where(pick > 1 - zero, torch.zeros_like(x), x)


@st.composite
def unit_case(
    draw: st.DrawFn,
    *,
    dtypes: tuple[torch.dtype, ...] = DTYPES,
    layouts: tuple[str, ...] = LAYOUTS,
    special: bool = True,
) -> UnitCase:
    """Draw a weight, a direction, the unit dims and a floor (see the module docstring)."""
    ndim = draw(st.integers(1, 4))
    shape = draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim))
    dims = reduced_dims(ndim, draw(st.sampled_from(GRANULARITIES)))
    dtype = draw(st.sampled_from(dtypes))
    span = 3.0 if dtype == torch.float16 else 6.0  # float16 holds 6e-8 .. 65504
    w_scale = 10 ** draw(st.floats(-span, span))
    d_scale = 10 ** draw(st.floats(-span, span))
    lambd = draw(st.floats(0.0, 1.0))  # Hypothesis tries the end points 0 and 1 too
    seed = draw(st.integers(0, 2**32 - 1))
    g = torch.Generator().manual_seed(seed)
    unit_shape = [1 if i in dims else n for i, n in enumerate(shape)]

    def rand() -> Tensor:
        return torch.rand(unit_shape, generator=g, dtype=torch.float64)

    # Per-unit target cosines: half of them strictly between the floor and 1, the rest in (-1, 1).
    # The first unit's is always strictly between (unless the unit has one element).
    cos = torch.where(rand() < 0.5, lambd + (1 - lambd) * rand(), 2 * rand() - 1)
    cos.view(-1)[0] = lambd + (1 - lambd) * (0.05 + 0.9 * torch.rand((), generator=g, dtype=torch.float64))
    base = torch.randn(shape, generator=g, dtype=torch.float64)
    unit_w = base / _unit_norm(base, dims)
    noise = torch.randn(shape, generator=g, dtype=torch.float64)
    ortho = noise - (noise * unit_w).sum(dim=dims, keepdim=True) * unit_w
    ortho = ortho / _unit_norm(ortho, dims).clamp_min(1e-300)  # zero for one-element units: cosine +-1
    magnitude = 10 ** (2 * rand() - 1)  # unit norms spread over two decades around the scale
    d = (cos * unit_w + (1 - cos**2).sqrt() * ortho) * magnitude * d_scale
    w = base * w_scale
    if special:
        near_eps_ok = dtype != torch.float16  # float16 flushes such values to zero anyway
        zero_w, eps_w, zero_d, eps_d = (draw(st.sampled_from([0.0, 0.0, 0.2, 0.5])) for _ in range(4))
        w = _special_units(w, g, dims, unit_shape, zero_w, eps_w if near_eps_ok else 0.0)
        d = _special_units(d, g, dims, unit_shape, zero_d, eps_d if near_eps_ok else 0.0)
    perm = draw(st.permutations(list(range(ndim))))
    w_t = _with_layout(w.to(dtype), draw(st.sampled_from(layouts)), perm)
    d_t = _with_layout(d.to(dtype), draw(st.sampled_from(layouts)), perm)
    return UnitCase(w_t, d_t, dims, lambd)


def unit_cases(max_size: int = 5, **kwargs: object) -> st.SearchStrategy[list[UnitCase]]:
    """Lists of :func:`unit_case` examples (for the grouped computation)."""
    return st.lists(unit_case(**kwargs), min_size=1, max_size=max_size)  # type: ignore[arg-type]
