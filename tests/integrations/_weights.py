"""Shared helpers for the tests that check that weight-like optimizer state keeps the shrink."""

from __future__ import annotations

import torch
from torch import nn


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def batches(n: int = 3, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 4, generator=g), torch.randint(0, 3, (16,), generator=g)) for _ in range(n)]


def train(model: nn.Module, opt: torch.optim.Optimizer, data, steps: int) -> None:
    for i in range(steps):
        x, y = data[i % len(data)]
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def assert_shrink_kept(shrunk: nn.Module, unshrunk: nn.Module, factors: dict[str, torch.Tensor], policy: str,
                       at_shrink: dict[str, torch.Tensor]) -> None:
    """After steps at lr 0, the shrunk model is the unshrunk one times the factors (keep, scale), or
    still exactly the weights right after the shrink (reset: the optimizer restarts its copies there)."""
    ref = dict(unshrunk.named_parameters())
    for name, p in shrunk.named_parameters():
        if policy == "reset":
            torch.testing.assert_close(p, at_shrink[name], rtol=1e-6, atol=1e-7)
        else:
            expected = ref[name] * factors[name] if name in factors else ref[name]
            torch.testing.assert_close(p, expected, rtol=1e-5, atol=1e-6)
