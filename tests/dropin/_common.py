"""Shared helpers of the drop-in tests: tiny models, data and exact snapshots."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from torch_dash_optim import DASHWrapper


def tiny_cnn(seed: int = 0) -> nn.Module:
    """Conv + BatchNorm + Linear: kernels, biases, buffers and a norm layer to skip."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.1),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 3),
    )


def tiny_mlp(seed: int = 0, width: int = 8) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 3))


def image_batches(n: int = 4, size: int = 6, seed: int = 1) -> list[tuple[Tensor, Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(size, 2, 4, 4, generator=g), torch.randint(0, 3, (size,), generator=g)) for _ in range(n)
    ]


def vector_batches(n: int = 4, size: int = 8, seed: int = 1) -> list[tuple[Tensor, Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 4, generator=g), torch.randint(0, 3, (size,), generator=g)) for _ in range(n)]


def train(opt: torch.optim.Optimizer, model: nn.Module, batches: list[tuple[Tensor, Tensor]]) -> None:
    model.train()
    for x, y in batches:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def snapshot(model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    """Exact copies of everything on_new_data must leave as it was on failure."""
    return {
        "params": {n: p.detach().clone() for n, p in model.named_parameters()},
        "grads": {n: (None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()},
        "grad_ids": {n: id(p.grad) for n, p in model.named_parameters()},
        "buffers": {n: b.clone() for n, b in model.named_buffers()},
        "modes": {n: m.training for n, m in model.named_modules()},
        "opt": copy.deepcopy(opt.state_dict()),
        "calls": getattr(opt, "num_dash_calls", None),
    }


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return (
            isinstance(a, Tensor)
            and isinstance(b, Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and bool(torch.equal(a, b) or (a.isnan().any() and torch.equal(a.nan_to_num(), b.nan_to_num())))
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return (
            isinstance(b, (list, tuple))
            and len(a) == len(b)
            and all(_same(x, y) for x, y in zip(a, b, strict=True))
        )
    return a == b


def assert_unchanged(before: dict[str, Any], model: nn.Module, opt: torch.optim.Optimizer) -> None:
    after = snapshot(model, opt)
    for key in before:
        assert _same(before[key], after[key]), f"{key} changed"


def wrapped_sgd(model: nn.Module, **kwargs: Any) -> DASHWrapper:
    base = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return DASHWrapper(base, model=model, loss_fn=nn.CrossEntropyLoss(), **kwargs)
