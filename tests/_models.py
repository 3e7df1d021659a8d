"""Small models and data shared by the tests."""

from __future__ import annotations

import torch
from _snapshot import assert_same, assert_unchanged, snapshot
from torch import nn

__all__ = ["SmallCNN", "assert_same", "assert_unchanged", "make_data", "snapshot", "train_steps"]


class SmallCNN(nn.Module):
    """Conv with bias, bias-free conv + BatchNorm, Conv1d-free 2-D net, then two Linear layers."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.2)
        self.fc1 = nn.Linear(8 * 4 * 4, 16)
        self.fc2 = nn.Linear(16, classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.bn(self.conv2(x)))
        x = nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)
        return self.fc2(self.drop(torch.relu(self.fc1(x))))


def make_data(n_batches: int = 3, batch: int = 8, classes: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(batch, 3, 8, 8, generator=g), torch.randint(0, classes, (batch,), generator=g))
        for _ in range(n_batches)
    ]


def train_steps(model: nn.Module, opt: torch.optim.Optimizer, data, steps: int = 3) -> None:
    """A few plain training steps, so that optimizer state exists. Works for SAM too."""
    model.train()
    for i in range(steps):
        x, y = data[i % len(data)]

        def closure(x=x, y=y):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            return loss

        opt.step(closure)
