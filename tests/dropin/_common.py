"""Shared helpers of the drop-in tests: tiny models and data; the exact snapshots live in tests/_snapshot.py."""

from __future__ import annotations

from typing import Any

import torch
from _snapshot import assert_same, assert_unchanged, snapshot
from torch import Tensor, nn

from torch_dash_optim import DASHWrapper

__all__ = [
    "assert_same",
    "assert_unchanged",
    "image_batches",
    "snapshot",
    "tiny_cnn",
    "tiny_mlp",
    "train",
    "vector_batches",
    "wrapped_sgd",
]


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


def wrapped_sgd(model: nn.Module, **kwargs: Any) -> DASHWrapper:
    base = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return DASHWrapper(base, model=model, loss_fn=nn.CrossEntropyLoss(), **kwargs)
