"""Models and data for the CUDA tests, built on the CPU and moved to the device under test."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from torch_dash_optim import DASHWrapper

__all__ = ["batches", "cnn", "factors_close", "mlp", "params_equal", "train", "wrapped"]


def cnn(device: torch.device, seed: int = 0) -> nn.Module:
    """Conv + BatchNorm + Linear on 3x8x8 inputs."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 8 * 8, 4),
    )
    return model.to(device)


def mlp(device: torch.device, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 4)).to(device)


def batches(
    device: torch.device, n: int = 4, size: int = 16, image: bool = True, seed: int = 1
) -> list[tuple[Tensor, Tensor]]:
    """``n`` learnable batches (labels from a fixed map of the inputs) on ``device``."""
    g = torch.Generator().manual_seed(seed)
    shape = (3, 8, 8) if image else (12,)
    teacher = torch.randn(int(torch.tensor(shape).prod()), 4, generator=g)
    out = []
    for _ in range(n):
        x = torch.randn(size, *shape, generator=g)
        out.append((x.to(device), (x.flatten(1) @ teacher).argmax(dim=1).to(device)))
    return out


def wrapped(model: nn.Module, opt: torch.optim.Optimizer, **kw: object) -> DASHWrapper:
    return DASHWrapper(opt, model=model, loss_fn=nn.CrossEntropyLoss(), **kw)


def train(opt: torch.optim.Optimizer, model: nn.Module, data: list[tuple[Tensor, Tensor]]) -> None:
    model.train()
    for x, y in data:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def params_equal(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def factors_close(a: dict[str, Tensor], b: dict[str, Tensor], atol: float) -> float:
    """The largest factor difference between two reports' factors (same names); asserts it is within ``atol``."""
    assert a.keys() == b.keys()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst <= atol, worst
    return worst
