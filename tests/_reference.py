"""An independent float64 reference of DASH, written from the paper and the authors' code.

Nothing here imports ``torch_dash_optim``: per-batch gradients come from ``torch.autograd.grad``
on a float64 copy of the model, the EMA is an explicit loop, and each unit's cosine, clamp and
multiply are spelled out. The rules it encodes (README, "Options"; ``units.py``, ``selection.py``):

* direction: :math:`G_0 = 0,\\; G_i = (1-\\alpha) G_{i-1} + \\alpha(-g_i)` over the batches in
  order, no bias correction; a parameter no batch reached is left alone;
* shrunk parameters: weight and bias of every ``Conv1d/2d/3d`` and ``Linear`` module that
  requires grad (tied parameters once, under their first name);
* units: a Conv weight ``(out, in, *k)`` has one unit per ``(out, in)`` kernel slice, a Linear
  weight one per row, a bias is one unit; ``"neuron"`` makes one unit per slice along dim 0 and
  ``"tensor"`` one per tensor;
* factor :math:`\\operatorname{clamp}(\\cos(w_u, G_u), \\lambda, 1)` with each norm clamped
  below at ``1e-8`` (``torch.nn.functional.cosine_similarity``'s convention).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "EPS",
    "cosine_per_unit",
    "dash_reference",
    "ema_of_negative_gradients",
    "factors_reference",
    "unit_cosines",
    "unit_view",
]

EPS = 1e-8
_SHRINKABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def unit_view(t: Tensor, kind: str, granularity: str = "kernel") -> Tensor:
    """``t`` (float64) as ``(number of units, unit size)``, for a ``"weight"`` or a ``"bias"``."""
    t = t.detach().to(torch.float64)
    if kind == "bias" or t.ndim == 1 or granularity == "tensor":
        return t.reshape(1, -1)
    if granularity == "neuron" or t.ndim == 2:
        return t.reshape(t.shape[0], -1)
    return t.reshape(t.shape[0] * t.shape[1], -1)  # (out, in) kernel slices


def cosine_per_unit(w: Tensor, g: Tensor) -> Tensor:
    """Row-wise cosine of two ``(units, size)`` float64 matrices, each norm clamped at ``EPS``."""
    dot = (w * g).sum(dim=1)
    nw = w.pow(2).sum(dim=1).sqrt().clamp(min=EPS)
    ng = g.pow(2).sum(dim=1).sqrt().clamp(min=EPS)
    return dot / nw / ng


def unit_cosines(w: Tensor, d: Tensor, dims: Sequence[int]) -> Tensor:
    """Per-unit float64 cosines of ``w`` and ``d``, units reduced over ``dims``, kept as size-1 dims."""
    dims = sorted(x % w.ndim for x in dims)
    kept = [i for i in range(w.ndim) if i not in dims]
    w64 = w.detach().to(torch.float64).permute(*kept, *dims).reshape(-1, _numel(w, dims))
    d64 = d.detach().to(torch.float64).permute(*kept, *dims).reshape(-1, _numel(w, dims))
    shape = [1 if i in dims else n for i, n in enumerate(w.shape)]
    return cosine_per_unit(w64, d64).reshape(shape)


def factors_reference(w: Tensor, d: Tensor, dims: Sequence[int], lambd: float) -> Tensor:
    """``clamp(cos(w_u, d_u), lambd, 1)`` per unit, in float64, kept dims of size 1."""
    return unit_cosines(w, d, dims).clamp(min=lambd, max=1.0)


def _numel(t: Tensor, dims: Sequence[int]) -> int:
    n = 1
    for i in dims:
        n *= t.shape[i]
    return n


def _to64(batch: Any) -> Any:
    if isinstance(batch, Tensor):
        return batch.double() if batch.is_floating_point() else batch
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to64(b) for b in batch)
    return batch


def _targets(model: nn.Module, include: Callable[[str], bool]) -> dict[str, tuple[nn.Parameter, str]]:
    """name -> (parameter, "weight"/"bias") for every shrinkable, trainable, included parameter."""
    out: dict[str, tuple[nn.Parameter, str]] = {}
    seen: set[int] = set()
    for mod_name, module in model.named_modules():
        if not isinstance(module, _SHRINKABLE):
            continue
        for kind in ("weight", "bias"):
            p = module._parameters.get(kind)
            if p is None or id(p) in seen:
                continue
            seen.add(id(p))
            name = f"{mod_name}.{kind}" if mod_name else kind
            if p.requires_grad and include(name):
                out[name] = (p, kind)
    return out


def ema_of_negative_gradients(
    model: nn.Module,
    data: Iterable[Any],
    loss_fn: Callable[[Tensor, Any], Tensor],
    params: Sequence[Tensor],
    alpha: float,
) -> list[Tensor | None]:
    """The EMA of the negative per-batch gradients of ``params``, in float64 (``None``: never reached).

    ``model`` and ``params`` must already be float64; batches are cast to float64 here.
    """
    ema: list[Tensor | None] = [None] * len(params)
    for batch in data:
        x, y = _to64(batch)
        loss = loss_fn(model(x), y)
        grads = torch.autograd.grad(loss, list(params), allow_unused=True)
        for i, g in enumerate(grads):
            old = ema[i]
            if g is None:
                if old is not None:
                    ema[i] = (1.0 - alpha) * old
                continue
            previous = old if old is not None else torch.zeros_like(g)
            ema[i] = (1.0 - alpha) * previous + alpha * (-g)
    return ema


def dash_reference(
    model: nn.Module,
    data: Sequence[Any],
    loss_fn: Callable[[Tensor, Any], Tensor],
    *,
    lambd: float | dict[str, float] = 0.3,
    alpha: float = 0.3,
    granularity: str | dict[str, str] = "kernel",
    include: Callable[[str], bool] = lambda name: True,
) -> dict[str, Tensor]:
    """Every parameter of ``model`` after one DASH shrink, by name, in float64.

    The model is copied (float64, eval mode: BatchNorm uses its running statistics, dropout is
    off); ``model`` itself is not touched. ``lambd`` and ``granularity`` may be given per
    parameter name; ``include(name)`` says whether the optimizer holds that parameter.
    """
    ref = copy.deepcopy(model).double().eval()
    targets = _targets(ref, include)
    params = [p for p, _ in targets.values()]
    directions = ema_of_negative_gradients(ref, data, loss_fn, params, alpha)
    out = {name: p.detach().clone() for name, p in ref.named_parameters()}
    with torch.no_grad():
        for (name, (p, kind)), g in zip(targets.items(), directions, strict=True):
            if g is None:
                continue
            floor = lambd[name] if isinstance(lambd, dict) else lambd
            gran = granularity.get(name, "kernel") if isinstance(granularity, dict) else granularity
            w_units = unit_view(p, kind, gran)
            cos = cosine_per_unit(w_units, unit_view(g, kind, gran))
            factor = cos.clamp(min=floor, max=1.0)
            out[name] = (w_units * factor[:, None]).reshape(p.shape)
    return out
