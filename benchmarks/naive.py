"""The anchor: the authors' naive DASH, re-implemented for comparison.

It follows the published approach step by step (not its code): copy the whole model, walk its
modules in Python after every batch, and build a *new* EMA tensor for every Conv/Linear
parameter on every batch (``(1 - alpha) * ema + alpha * (-grad)``, which also allocates the
temporaries of each arithmetic operation); then shrink the original model module by module,
one cosine and one in-place multiply per tensor.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

__all__ = ["naive_dash", "naive_gather", "per_tensor_shrink"]

_SHRINKABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _shrinkable(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, _SHRINKABLE)]


def naive_gather(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    loader: Iterable[tuple[Tensor, Tensor]],
    alpha: float = 0.3,
    train_mode: bool = False,
) -> tuple[list[Tensor], list[Tensor | None]]:
    """Gather the EMA of negative gradients on a deep copy of ``model``.

    Returns
    -------
    (weight directions, bias directions)
        One direction per Conv/Linear module, in ``model.modules()`` order (``None`` for a
        module without bias).

    Examples
    --------
    >>> lin = torch.nn.Linear(2, 1)
    >>> w, b = naive_gather(lin, torch.nn.MSELoss(), [(torch.ones(3, 2), torch.zeros(3, 1))], alpha=1.0)
    >>> len(w), b[0] is not None
    (1, True)
    """
    clone = copy.deepcopy(model)
    clone.train(train_mode)
    modules = _shrinkable(clone)
    ema_w = [torch.zeros_like(m.weight) for m in modules]
    ema_b: list[Tensor | None] = [torch.zeros_like(m.bias) if m.bias is not None else None for m in modules]
    for inputs, targets in loader:
        clone.zero_grad()
        loss_fn(clone(inputs), targets).backward()
        for i, m in enumerate(modules):
            # A fresh tensor per parameter per batch, as in the anchor.
            ema_w[i] = (1 - alpha) * ema_w[i] + alpha * (-m.weight.grad.detach())
            if m.bias is not None:
                ema_b[i] = (1 - alpha) * ema_b[i] + alpha * (-m.bias.grad.detach())
    return ema_w, ema_b


@torch.no_grad()
def per_tensor_shrink(
    weights: list[Tensor], directions: list[Tensor], lambd: float = 0.3, biases: list[bool] | None = None
) -> None:
    """Shrink each tensor in place, one at a time, as the anchor does.

    A Conv weight ``(out, in, *k)`` gets one factor per ``(out, in)`` kernel slice, a Linear
    weight one per row, a bias (``biases[i]`` true, or any 1-D tensor) one for the whole vector;
    each factor is ``clamp(cosine_similarity(w, d), lambd, 1)``.

    Examples
    --------
    >>> w = torch.tensor([[1.0, 1.0], [1.0, -1.0]])
    >>> per_tensor_shrink([w], [torch.tensor([[2.0, 2.0], [-1.0, 1.0]])])
    >>> [[round(x, 4) for x in row] for row in w.tolist()]
    [[1.0, 1.0], [0.3, -0.3]]
    """
    for i, (w, d) in enumerate(zip(weights, directions, strict=True)):
        if w.ndim == 1 or (biases is not None and biases[i]):
            cos = torch.cosine_similarity(d.reshape(1, -1), w.reshape(1, -1))
            w.mul_(torch.clamp(cos, min=lambd, max=1))
        elif w.ndim == 2:
            cos = torch.cosine_similarity(d, w, dim=-1)
            w.mul_(torch.clamp(cos, min=lambd, max=1)[:, None])
        else:
            flat_w = w.reshape(w.shape[0], w.shape[1], -1)
            cos = torch.cosine_similarity(d.reshape(flat_w.shape), flat_w, dim=-1)
            flat_w.mul_(torch.clamp(cos, min=lambd, max=1)[:, :, None])
            if flat_w.data_ptr() != w.data_ptr():  # reshape copied (non-contiguous weight)
                w.copy_(flat_w.reshape(w.shape))


def naive_dash(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    loader: Iterable[tuple[Tensor, Tensor]],
    alpha: float = 0.3,
    lambd: float = 0.3,
    train_mode: bool = False,
) -> nn.Module:
    """The whole naive DASH: :func:`naive_gather` then :func:`per_tensor_shrink` on ``model``.

    Examples
    --------
    >>> lin = torch.nn.Linear(2, 1)
    >>> naive_dash(lin, torch.nn.MSELoss(), [(torch.ones(3, 2), torch.zeros(3, 1))]) is lin
    True
    """
    ema_w, ema_b = naive_gather(model, loss_fn, loader, alpha, train_mode)
    tensors: list[Tensor] = []
    dirs: list[Tensor] = []
    biases: list[bool] = []
    for m, dw, db in zip(_shrinkable(model), ema_w, ema_b, strict=True):
        tensors.append(m.weight)
        dirs.append(dw)
        biases.append(False)
        if m.bias is not None and db is not None:
            tensors.append(m.bias)
            dirs.append(db)
            biases.append(True)
    per_tensor_shrink(tensors, dirs, lambd, biases)
    return model
