"""Small models and data shared by the tests."""

from __future__ import annotations

import torch
from torch import nn


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


def snapshot(model: nn.Module, opt: torch.optim.Optimizer | None = None) -> dict:
    """Everything on_new_data must leave as it was (weights included)."""
    snap = {
        "params": {k: v.detach().clone() for k, v in model.named_parameters()},
        "grads": {k: (None if v.grad is None else v.grad.clone()) for k, v in model.named_parameters()},
        "grad_ids": {k: id(v.grad) for k, v in model.named_parameters()},
        "buffers": {k: v.clone() for k, v in model.named_buffers()},
        "modes": {k: m.training for k, m in model.named_modules()},
    }
    if opt is not None:
        snap["state"] = {
            id(p): {k: (v.clone() if torch.is_tensor(v) else v) for k, v in s.items()} for p, s in opt.state.items()
        }
        snap["groups"] = {i: {k: v for k, v in g.items() if k != "params"} for i, g in enumerate(opt.param_groups)}
    return snap


def assert_same(before: dict, after: dict, *, weights: bool = True) -> None:
    """Bit-identical comparison of two snapshots (weights optional)."""
    keys = ["grads", "buffers", "modes", "state", "groups"] + (["params"] if weights else [])
    for key in keys:
        if key not in before:
            continue
        a, b = before[key], after[key]
        assert a.keys() == b.keys(), key
        for name in a:
            x, y = a[name], b[name]
            if isinstance(x, dict):
                assert x.keys() == y.keys(), (key, name)
                for k in x:
                    _equal(x[k], y[k], (key, name, k))
            else:
                _equal(x, y, (key, name))
    assert before["grad_ids"] == after["grad_ids"], "grad tensors were replaced"


def _equal(x, y, where) -> None:
    if torch.is_tensor(x):
        assert torch.is_tensor(y) and x.dtype == y.dtype and torch.equal(x, y), where
    else:
        assert x == y, where
