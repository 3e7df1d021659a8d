r"""Pure tensor math of DASH: per-unit cosine factors and the in-place shrink.

Nothing here knows about modules or optimizers. A tensor is split into *units*, and each unit
gets one factor

.. math::

    s_u = \operatorname{clamp}\bigl(\cos(w_u, d_u),\ \lambda,\ 1\bigr),
    \qquad
    \cos(a, b) = \frac{\langle a, b\rangle}{\max(\lVert a\rVert, \epsilon)\,\max(\lVert b\rVert, \epsilon)}

where :math:`d` is the gathered direction (the negative gradient) and :math:`\epsilon = 10^{-8}`,
the semantics of :func:`torch.nn.functional.cosine_similarity`: a zero direction gives a
cosine of 0, so the factor is :math:`\lambda`.

A unit is described by ``dims``, the dimensions that are reduced to get one number per unit.
Factors keep those dimensions with size 1, so they broadcast against the tensor whatever its
memory layout (channels_last and other non-contiguous tensors need no copy).

Some tensors stack several layers along dim 0: ``nn.MultiheadAttention``'s ``in_proj_bias`` holds
the q, k and v biases one after the other. ``groups`` says so: dim 0 is made of ``groups`` equal
blocks, and no unit spans two of them (the ``in_proj_bias`` with ``dims=(0,)`` and ``groups=3``
has three units, its thirds). The factors of such a tensor are repeated along dim 0 within each
block, so they still broadcast against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "COSINE_EPS",
    "GRANULARITIES",
    "cosine_per_unit",
    "dash_factors",
    "dash_factors_many",
    "shrink_",
    "unit_dims",
]

#: The ``eps`` of :func:`torch.nn.functional.cosine_similarity`, which the authors' code uses.
COSINE_EPS: float = 1e-8

#: The ways a weight can be split into units (see :func:`unit_dims`).
GRANULARITIES: tuple[str, ...] = ("kernel", "neuron", "tensor")


def unit_dims(ndim: int, granularity: str = "kernel", *, axis: int | None = 0) -> tuple[int, ...]:
    """Return the dimensions reduced to get one factor per unit of a weight.

    Parameters
    ----------
    ndim:
        Number of dimensions of the weight (at least 1).
    granularity:
        ``"kernel"``: one unit per ``(out, in)`` kernel slice of a Conv weight
        (``ndim >= 3``) and one per output row of a Linear weight (``ndim == 2``), as in the
        paper. ``"neuron"``: one unit per slice along ``axis`` (an output filter or row).
        ``"tensor"``: the whole tensor is one unit. A 1-D tensor (a bias) is always one unit.
    axis:
        The dimension that indexes the units, the output channels: 0 for ``Linear`` and Conv
        weights ``(out, in, ...)``, 1 for ``ConvTranspose`` weights ``(in, out, ...)`` and for
        weights stored ``(in, out)`` (transformers' ``Conv1D``). ``None``: the whole tensor is
        one unit, whatever the granularity (a bias). Under ``"kernel"``, a tensor of three or
        more dimensions whose ``axis`` is 0 or 1 is split into its kernel slices over the first
        two dimensions; any other tensor into slices along ``axis``, as under ``"neuron"``.

    Returns
    -------
    tuple of int
        The dimensions to reduce over, in increasing order.

    Examples
    --------
    >>> unit_dims(4)                # Conv2d weight (out, in, kh, kw): per kernel slice
    (2, 3)
    >>> unit_dims(4, "neuron")      # per output filter
    (1, 2, 3)
    >>> unit_dims(2)                # Linear weight: per output row
    (1,)
    >>> unit_dims(2, axis=1)        # a weight stored (in, out): per column
    (0,)
    >>> unit_dims(4, "neuron", axis=1)   # ConvTranspose2d weight (in, out, kh, kw): per output filter
    (0, 2, 3)
    >>> unit_dims(1, "neuron")      # a bias is one unit
    (0,)
    """
    if granularity not in GRANULARITIES:
        raise ValueError(
            f"unknown granularity {granularity!r}; use one of {', '.join(map(repr, GRANULARITIES))}"
        )
    if ndim < 1:
        raise ValueError(f"a 0-dim tensor has no units; got ndim={ndim}")
    if axis is not None and not (isinstance(axis, int) and -ndim <= axis < ndim):
        raise ValueError(f"axis={axis!r} is not a dimension of a {ndim}-dim tensor; use 0 to {ndim - 1}, or None")
    if ndim == 1 or granularity == "tensor" or axis is None:
        return tuple(range(ndim))
    axis %= ndim
    if granularity == "kernel" and ndim >= 3 and axis in (0, 1):
        return tuple(range(2, ndim))
    return tuple(d for d in range(ndim) if d != axis)


def _check_groups(shape: Sequence[int], groups: int) -> None:
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"groups must be a positive int; got {groups!r}")
    if groups > 1 and (len(shape) == 0 or shape[0] % groups):
        raise ValueError(
            f"groups={groups} does not divide dim 0 of a tensor of shape {tuple(shape)} into equal blocks"
        )


def _split(tensor: Tensor, dims: Sequence[int], groups: int) -> tuple[Tensor, tuple[int, ...]]:
    """The tensor viewed with dim 0 as (groups, rest), and ``dims`` in that view (unchanged if no unit spans dim 0)."""
    norm = tuple(sorted({d % tensor.ndim for d in dims})) if tensor.ndim else tuple(dims)
    if groups == 1 or 0 not in norm:
        return tensor, norm
    return tensor.unflatten(0, (groups, tensor.shape[0] // groups)), tuple(d + 1 for d in norm)


def _merge(factors: Tensor, shape: Sequence[int], groups: int) -> Tensor:
    """Factors of the (groups, rest) view, repeated within each block so they broadcast against ``shape``."""
    if factors.ndim == len(shape):
        return factors
    rest = tuple(factors.shape[2:])
    return factors.expand(groups, shape[0] // groups, *rest).reshape(shape[0], *rest)


def cosine_per_unit(
    a: Tensor, b: Tensor, dims: Sequence[int], eps: float = COSINE_EPS, *, groups: int = 1
) -> Tensor:
    """Cosine similarity between ``a`` and ``b`` over ``dims``, computed in float32.

    Matches :func:`torch.nn.functional.cosine_similarity` (each norm clamped below at
    ``eps``) to float32 rounding, but works on any memory layout and keeps the reduced
    dimensions with size 1, so the result broadcasts against ``a``.

    Parameters
    ----------
    a, b:
        Tensors of the same shape, of any floating dtype.
    dims:
        Dimensions to reduce over (see :func:`unit_dims`).
    eps:
        Lower clamp of each norm.
    groups:
        Dim 0 is made of this many equal blocks that no unit spans (the q, k and v thirds of
        ``nn.MultiheadAttention``'s ``in_proj_bias``). Where a unit would span dim 0, it is cut
        at the blocks' edges, and its cosine is repeated along dim 0 within its block.

    Returns
    -------
    Tensor
        float32 cosines, with ``dims`` kept as size-1 dimensions (dim 0 kept whole where it
        holds several blocks).

    Examples
    --------
    >>> w = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    >>> cosine_per_unit(w, torch.tensor([[3.0, 0.0], [1.0, 0.0]]), (1,)).flatten().tolist()
    [1.0, 0.0]
    >>> cosine_per_unit(torch.tensor([1.0, 1.0, 1.0, -1.0]), torch.ones(4), (0,), groups=2).tolist()
    [1.0, 1.0, 0.0, 0.0]
    """
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} and {tuple(b.shape)}")
    _check_groups(a.shape, groups)
    shape = a.shape
    a, view_dims = _split(a, dims, groups)
    b, _ = _split(b, dims, groups)
    a32, b32 = a.float(), b.float()
    dot = (a32 * b32).sum(dim=view_dims, keepdim=True)
    na = torch.linalg.vector_norm(a32, dim=view_dims, keepdim=True).clamp_min_(eps)
    nb = torch.linalg.vector_norm(b32, dim=view_dims, keepdim=True).clamp_min_(eps)
    return _merge(dot.div_(na).div_(nb), shape, groups)


def dash_factors(
    weight: Tensor, direction: Tensor, dims: Sequence[int], lambd: float, eps: float = COSINE_EPS, *, groups: int = 1
) -> Tensor:
    r"""DASH shrink factors :math:`\operatorname{clamp}(\cos(w_u, d_u), \lambda, 1)` per unit.

    Parameters
    ----------
    weight:
        The weight tensor.
    direction:
        The gathered direction, the *negative* gradient, of the same shape.
    dims:
        Dimensions reduced per unit (see :func:`unit_dims`).
    lambd:
        The floor :math:`\lambda \in [0, 1]`.
    eps:
        Lower clamp of each norm in the cosine.
    groups:
        Dim 0 is made of this many equal blocks that no unit spans (see
        :func:`cosine_per_unit`).

    Returns
    -------
    Tensor
        float32 factors in ``[lambd, 1]`` that broadcast against ``weight``.

    Examples
    --------
    >>> w = torch.tensor([[1.0, 1.0], [1.0, -1.0]])
    >>> d = torch.tensor([[2.0, 2.0], [-1.0, 1.0]])
    >>> dash_factors(w, d, (1,), lambd=0.3).flatten().tolist()   # aligned row kept, opposed row floored
    [1.0, 0.30000001192092896]
    """
    return cosine_per_unit(weight, direction, dims, eps, groups=groups).clamp_(min=lambd, max=1.0)


#: Units of at most this many elements are reduced by a matrix-vector product with a vector
#: of ones: PyTorch's CPU reductions over a short innermost dimension (a 3x3 kernel) are slow.
_SHORT_UNIT = 64


#: Elements per chunk of the scratch buffer (256 KiB of float32: with the two input chunks it stays in L2).
_CHUNK = 1 << 16


def _unit_size(tensor: Tensor, dims: Sequence[int]) -> int:
    size = 1
    for x in dims:
        size *= tensor.shape[x]
    return size


def _trailing(dims: tuple[int, ...], ndim: int) -> bool:
    return tuple(sorted(d % ndim for d in dims)) == tuple(range(ndim - len(dims), ndim))


def _leading(dims: tuple[int, ...], ndim: int) -> bool:
    return tuple(sorted(d % ndim for d in dims)) == tuple(range(len(dims)))


def _fast_layout(w: Tensor, d: Tensor, dims: tuple[int, ...]) -> str | None:
    """``"rows"`` (units are the trailing dims), ``"columns"`` (the leading dims) or ``None`` (no fast path)."""
    if not (
        type(w) in (Tensor, torch.nn.Parameter)
        and type(d) in (Tensor, torch.nn.Parameter)
        and w.dtype == d.dtype == torch.float32
        and w.device == d.device
        and w.numel() > 0
        and w.is_contiguous()
        and d.is_contiguous()
    ):
        return None
    if _trailing(dims, w.ndim) and (_unit_size(w, dims) <= _CHUNK or not _leading(dims, w.ndim)):
        return "rows"
    if _leading(dims, w.ndim):
        return "columns"  # a weight stored (in, out), or one unit larger than a chunk
    return None


def dash_factors_many(
    weights: Sequence[Tensor],
    directions: Sequence[Tensor],
    dims: Sequence[Sequence[int]],
    lambds: float | Sequence[float],
    eps: float = COSINE_EPS,
    *,
    groups: Sequence[int] | None = None,
) -> list[Tensor]:
    r""":func:`dash_factors` for many tensors at once, with no parameter-sized temporaries.

    The same factors as ``[dash_factors(w, d, dm, l, groups=g) for ...]`` to float32 rounding,
    computed faster: the elementwise products go chunk by chunk through one small reused scratch
    buffer (256 KiB, so they stay in cache) instead of a fresh parameter-sized temporary each,
    short units (a 3x3 kernel) are summed by a matrix-vector product, and the cheap per-unit
    epilogue (clamping, dividing, flooring) runs as a few ``torch._foreach_*`` calls over all
    tensors. Contiguous float32 tensors whose units are their trailing dimensions (Linear rows,
    Conv kernels, biases) or their leading ones (the columns of a weight stored ``(in, out)``)
    take this path; any other tensor falls back to :func:`dash_factors`.

    Parameters
    ----------
    weights, directions:
        Weights and their gathered directions (same shapes, pairwise).
    dims:
        Dimensions reduced per unit, one tuple per tensor (see :func:`unit_dims`).
    lambds:
        One floor for all tensors, or one per tensor.
    eps:
        Lower clamp of each norm in the cosine.
    groups:
        Per tensor, the number of equal blocks of dim 0 that no unit spans (see
        :func:`cosine_per_unit`); ``None``: 1 for every tensor.

    Returns
    -------
    list of Tensor
        float32 factors in ``[lambd, 1]``, each broadcasting against its weight.

    Examples
    --------
    >>> w = [torch.tensor([[1.0, 1.0], [1.0, -1.0]]), torch.tensor([2.0, 0.0])]
    >>> d = [torch.tensor([[2.0, 2.0], [-1.0, 1.0]]), torch.tensor([1.0, 1.0])]
    >>> [f.flatten().tolist() for f in dash_factors_many(w, d, [(1,), (0,)], 0.3)]
    [[1.0, 0.30000001192092896], [0.7071067690849304]]
    """
    n = len(weights)
    if len(directions) != n or len(dims) != n:
        raise ValueError(f"got {n} weights, {len(directions)} directions and {len(dims)} dims")
    floors = [float(lambds)] * n if isinstance(lambds, (int, float)) else [float(x) for x in lambds]
    if len(floors) != n:
        raise ValueError(f"got {n} weights but {len(floors)} lambds")
    blocks = [1] * n if groups is None else list(groups)
    if len(blocks) != n:
        raise ValueError(f"got {n} weights but {len(blocks)} groups")
    out: list[Tensor | None] = [None] * n
    # (index, weight view, direction view, dims in the view, "rows"/"columns") of the fast tensors
    fast: list[tuple[int, Tensor, Tensor, tuple[int, ...], str]] = []
    for i, (w, d, dm) in enumerate(zip(weights, directions, dims, strict=True)):
        if w.shape != d.shape:
            raise ValueError(f"tensor {i}: shapes differ: {tuple(w.shape)} and {tuple(d.shape)}")
        _check_groups(w.shape, blocks[i])
        wv, view_dims = _split(w.detach(), tuple(dm), blocks[i])
        dv, _ = _split(d.detach(), tuple(dm), blocks[i])
        layout = _fast_layout(wv, dv, view_dims) if type(w) in (Tensor, torch.nn.Parameter) else None
        if layout is None:
            out[i] = dash_factors(w, d, dm, floors[i], eps, groups=blocks[i])
        else:
            fast.append((i, wv, dv, view_dims, layout))
    if fast:
        # One small scratch buffer per device, reused chunk after chunk: the products stay in
        # cache, and no parameter-sized temporary is allocated (or page-faulted in).
        widths: dict[torch.device, int] = {}
        for _, w, _, dm, layout in fast:
            size = _unit_size(w, dm)
            width = size if layout == "rows" else w.numel() // size
            widths[w.device] = max(widths.get(w.device, _CHUNK), width)
        buffers = {dev: torch.empty(k, dtype=torch.float32, device=dev) for dev, k in widths.items()}
        ones: dict[tuple[torch.device, int], Tensor] = {}

        def ones_of(device: torch.device, size: int) -> Tensor:
            if (device, size) not in ones:
                ones[(device, size)] = torch.ones(size, dtype=torch.float32, device=device)
            return ones[(device, size)]

        dots: list[Tensor] = []
        nws: list[Tensor] = []
        nds: list[Tensor] = []
        for _, w, d, dm, layout in fast:
            reduced = set(dm)
            shape = tuple(1 if k in reduced else s for k, s in enumerate(w.shape))
            size = _unit_size(w, dm)
            scratch = buffers[w.device]
            units = w.numel() // size
            dot, nw, nd = (torch.empty(units, dtype=torch.float32, device=w.device) for _ in range(3))
            if layout == "rows":
                _rows(w.reshape(units, size), d.reshape(units, size), dot, nw, nd, scratch, ones_of)
            else:
                _columns(w.reshape(size, units), d.reshape(size, units), dot, nw, nd, scratch, ones_of)
            dots.append(dot.view(shape))
            nws.append(nw.view(shape))
            nds.append(nd.view(shape))
        del buffers
        torch._foreach_clamp_min_(nws, eps)
        torch._foreach_clamp_min_(nds, eps)
        torch._foreach_div_(dots, nws)
        torch._foreach_div_(dots, nds)
        torch._foreach_clamp_min_(dots, [floors[i] for i, *_ in fast])
        torch._foreach_clamp_max_(dots, 1.0)
        for (i, *_), f in zip(fast, dots, strict=True):
            out[i] = _merge(f, weights[i].shape, blocks[i])
    return [f for f in out if f is not None]


def _rows(w2: Tensor, d2: Tensor, dot: Tensor, nw: Tensor, nd: Tensor, scratch: Tensor, ones_of: Any) -> None:
    """Per-row dot products and norms of (units, size) matrices, chunk by chunk of rows."""
    units, size = w2.shape
    short = size <= _SHORT_UNIT
    one = ones_of(w2.device, size) if short else None
    step = max(1, _CHUNK // size)
    for start in range(0, units, step):
        stop = min(units, start + step)
        wc, dc = w2[start:stop], d2[start:stop]
        buf = scratch[: (stop - start) * size].view(stop - start, size)
        if short:
            torch.mv(torch.mul(wc, dc, out=buf), one, out=dot[start:stop])
            torch.mv(torch.mul(wc, wc, out=buf), one, out=nw[start:stop])
            torch.mv(torch.mul(dc, dc, out=buf), one, out=nd[start:stop])
        else:
            torch.sum(torch.mul(wc, dc, out=buf), dim=1, out=dot[start:stop])
            torch.linalg.vector_norm(wc, dim=1, out=nw[start:stop])
            torch.linalg.vector_norm(dc, dim=1, out=nd[start:stop])
    if short:
        nw.sqrt_()
        nd.sqrt_()


def _columns(w2: Tensor, d2: Tensor, dot: Tensor, nw: Tensor, nd: Tensor, scratch: Tensor, ones_of: Any) -> None:
    """Per-column dot products and norms of (size, units) matrices, accumulated chunk by chunk of rows."""
    size, units = w2.shape
    step = max(1, _CHUNK // units)
    one = ones_of(w2.device, min(step, size))
    for acc in (dot, nw, nd):
        acc.zero_()
    for start in range(0, size, step):
        stop = min(size, start + step)
        wc, dc = w2[start:stop], d2[start:stop]
        buf = scratch[: (stop - start) * units].view(stop - start, units)
        ones = one[: stop - start]
        dot.addmv_(torch.mul(wc, dc, out=buf).t(), ones)
        nw.addmv_(torch.mul(wc, wc, out=buf).t(), ones)
        nd.addmv_(torch.mul(dc, dc, out=buf).t(), ones)
    nw.sqrt_()
    nd.sqrt_()


@torch.no_grad()
def shrink_(tensors: Sequence[Tensor], factors: Sequence[Tensor]) -> None:
    """Multiply each tensor in place by its broadcastable factor, in one fused call.

    One ``torch._foreach_mul_`` call covers all tensors (mixed dtypes and devices
    included), so a Python-level interrupt cannot land between two tensors. The tensor
    objects are kept: an optimizer that holds them still points at them.

    Parameters
    ----------
    tensors:
        Tensors to scale in place (parameters or optimizer state).
    factors:
        One factor tensor per tensor, broadcastable to it (as returned by
        :func:`dash_factors`).

    Examples
    --------
    >>> w = torch.ones(2, 3)
    >>> shrink_([w], [torch.tensor([[0.5], [1.0]])])
    >>> w.tolist()
    [[0.5, 0.5, 0.5], [1.0, 1.0, 1.0]]
    """
    if len(tensors) != len(factors):
        raise ValueError(f"got {len(tensors)} tensors but {len(factors)} factors")
    if tensors:
        torch._foreach_mul_(list(tensors), list(factors))
