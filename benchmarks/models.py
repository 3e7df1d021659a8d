"""Benchmark models and their synthetic loaders (generated, no download).

Each *case* is a model, a list of ``(inputs, targets)`` batches already on the device and a
loss function: exactly what :meth:`torch_dash_optim.DASHWrapper.on_new_data` consumes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from torch_dash_optim.experiments.models import ResNet18

__all__ = ["CASES", "Case", "GPTLinearStack", "make_case", "make_mlp", "make_resnet18", "make_transformer"]


@dataclass
class Case:
    """A model with its loader.

    Attributes
    ----------
    name:
        Short name used in the results.
    model:
        The model (on the device).
    loader:
        Batches ``(inputs, targets)``, already on the device.
    loss_fn:
        ``loss_fn(outputs, targets) -> scalar``.
    """

    name: str
    model: nn.Module
    loader: list[tuple[Tensor, Tensor]]
    loss_fn: Callable[[Tensor, Tensor], Tensor]

    @property
    def num_params(self) -> int:
        """Number of parameters of the model."""
        return sum(p.numel() for p in self.model.parameters())

    @property
    def param_bytes(self) -> int:
        """Bytes of the model's parameters."""
        return sum(p.numel() * p.element_size() for p in self.model.parameters())

    @property
    def num_samples(self) -> int:
        """Samples in the loader."""
        return sum(len(y) for _, y in self.loader)


def make_mlp(width: int = 1024, depth: int = 3, in_features: int = 784, classes: int = 10) -> nn.Module:
    """A ReLU MLP with ``depth`` Linear layers.

    Examples
    --------
    >>> sum(p.numel() for p in make_mlp(8, 2, 4, 3).parameters())
    67
    """
    layers: list[nn.Module] = []
    size = in_features
    for _ in range(depth - 1):
        layers += [nn.Linear(size, width), nn.ReLU()]
        size = width
    layers.append(nn.Linear(size, classes))
    return nn.Sequential(*layers)


def make_resnet18(width: int = 64) -> nn.Module:
    """The common CIFAR ResNet-18 (3x3 stem, no max-pool; 11.2M parameters at ``width=64``).

    The harness's model (:class:`torch_dash_optim.experiments.models.ResNet18`) without the
    max-pool that the authors keep; smaller widths are for smoke runs.

    Examples
    --------
    >>> make_resnet18(width=4)(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """
    return ResNet18(10, width=width, maxpool=False)


class TinyTransformer(nn.Module):
    """A pre-norm transformer encoder over token ids, mean-pooled into a classifier.

    Examples
    --------
    >>> TinyTransformer(vocab=50, dim=16, layers=1, heads=2)(torch.randint(0, 50, (3, 7))).shape
    torch.Size([3, 10])
    """

    def __init__(self, vocab: int = 1000, dim: int = 256, layers: int = 4, heads: int = 4, classes: int = 10) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.1, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.head(self.encoder(self.embed(tokens)).mean(dim=1))


def make_transformer(dim: int = 256, layers: int = 4) -> nn.Module:
    """A small transformer classifier (see :class:`TinyTransformer`)."""
    return TinyTransformer(dim=dim, layers=layers, heads=4)


class _MLPBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.proj(self.qkv(x)[..., : x.shape[-1]])
        return x + self.fc2(nn.functional.gelu(self.fc1(x)))


class GPTLinearStack(nn.Module):
    """The Linear layers of a GPT-2-small-shaped model (``dim=768, layers=14``: 99M parameters).

    Attention is left out (it has no parameters of its own); each block applies ``qkv``,
    ``proj``, ``fc1`` and ``fc2`` to every token, so a forward and backward pass costs about
    six flops per parameter per token, as in a transformer.

    Examples
    --------
    >>> GPTLinearStack(dim=8, layers=1)(torch.randn(5, 8)).shape
    torch.Size([5, 8])
    """

    def __init__(self, dim: int = 768, layers: int = 14) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[_MLPBlock(dim) for _ in range(layers)])

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(x)


def _loader(
    make_input: Callable[[torch.Generator], Tensor],
    batches: int,
    batch_size: int,
    classes: int,
    device: str,
    seed: int,
) -> list[tuple[Tensor, Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(batches):
        x = make_input(gen)
        y = torch.randint(0, classes, (batch_size,), generator=gen)
        out.append((x.to(device), y.to(device)))
    return out


def make_case(
    name: str,
    quick: bool = False,
    device: str = "cpu",
    batches: int | None = None,
    width: int | None = None,
    seed: int = 0,
) -> Case:
    """Build a benchmark case by name: ``"mlp"``, ``"resnet18"`` or ``"transformer"``.

    Parameters
    ----------
    name:
        The case.
    quick:
        Tiny sizes for a smoke run.
    device:
        Where the model and the batches live.
    batches:
        Override the number of batches.
    width:
        Override the width (MLP hidden size, ResNet base width, transformer dimension).
    seed:
        Seed of the weights and data.

    Examples
    --------
    >>> case = make_case("mlp", quick=True)
    >>> case.name, len(case.loader) > 0
    ('mlp', True)
    """
    torch.manual_seed(seed)
    spec: dict[str, Any]
    if name == "mlp":
        spec = {"width": 64, "batches": 2, "bs": 16} if quick else {"width": 1024, "batches": 32, "bs": 128}
        w = width or spec["width"]
        model: nn.Module = make_mlp(w, depth=3)
        bs = spec["bs"]
        loader = _loader(lambda g: torch.randn(bs, 784, generator=g), batches or spec["batches"], bs, 10, device, seed)
    elif name == "resnet18":
        spec = {"width": 4, "batches": 2, "bs": 4} if quick else {"width": 64, "batches": 4, "bs": 32}
        model = make_resnet18(width or spec["width"])
        bs = spec["bs"]
        loader = _loader(
            lambda g: torch.randn(bs, 3, 32, 32, generator=g),
            batches or spec["batches"],
            bs,
            10,
            device,
            seed,
        )
    elif name == "transformer":
        spec = (
            {"width": 16, "layers": 1, "batches": 2, "bs": 4, "seq": 8}
            if quick
            else {"width": 256, "layers": 4, "batches": 4, "bs": 16, "seq": 64}
        )
        model = make_transformer(width or spec["width"], spec["layers"])
        bs, seq = spec["bs"], spec["seq"]
        loader = _loader(
            lambda g: torch.randint(0, 1000, (bs, seq), generator=g),
            batches or spec["batches"],
            bs,
            10,
            device,
            seed,
        )
    else:
        raise ValueError(f"unknown case {name!r}; use one of {', '.join(map(repr, CASES))}")
    return Case(name, model.to(device), loader, nn.CrossEntropyLoss())


#: The cases of the ratio benchmarks, in order.
CASES: tuple[str, ...] = ("mlp", "resnet18", "transformer")
