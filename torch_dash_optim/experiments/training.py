"""One experiment's training (until the train-accuracy threshold) and the test evaluation."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from ..sam import SAM
from .config import ProtocolConfig

__all__ = ["TrainResult", "evaluate", "make_optimizer", "train_to_threshold"]

Penalty = Callable[[], Tensor]


def make_optimizer(model: nn.Module, name: str, config: ProtocolConfig) -> Optimizer:
    """Return a fresh ``"sgd"`` (SGD with momentum) or ``"sam"`` (SAM around it) optimizer.

    Parameters
    ----------
    model:
        The model whose parameters the optimizer updates.
    name:
        ``"sgd"`` or ``"sam"``.
    config:
        Gives the learning rate, momentum, weight decay and SAM's ``rho``.

    Returns
    -------
    torch.optim.Optimizer
        A :class:`torch.optim.SGD`, or a :class:`~torch_dash_optim.SAM` around SGD.

    Raises
    ------
    ValueError
        For any other ``name``.

    Examples
    --------
    >>> make_optimizer(torch.nn.Linear(2, 1), "sam", ProtocolConfig()).defaults["rho"]
    0.1
    """
    kwargs: dict[str, Any] = {
        "lr": config.lr,
        "momentum": config.momentum,
        "weight_decay": config.weight_decay,
    }
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), **kwargs)
    if name == "sam":
        return SAM(model.parameters(), torch.optim.SGD, rho=config.rho, **kwargs)
    raise ValueError(f"unknown optimizer {name!r}; use 'sgd' or 'sam'")


@dataclass(frozen=True)
class TrainResult:
    """What one experiment's training did.

    Attributes
    ----------
    epochs:
        Epochs run.
    steps:
        Optimizer steps taken (a SAM step counts once).
    train_acc:
        Train accuracy of the last epoch, over its batches in train mode.
    train_loss:
        Train loss of the last epoch, over its batches in train mode.
    diverged:
        The loss became inf/NaN; training stopped there.

    Examples
    --------
    >>> TrainResult(epochs=3, steps=30, train_acc=1.0, train_loss=0.01, diverged=False).steps
    30
    """

    epochs: int
    steps: int
    train_acc: float
    train_loss: float
    diverged: bool


def train_to_threshold(
    model: nn.Module,
    optimizer: Optimizer,
    loader: Iterable[tuple[Tensor, Tensor]],
    config: ProtocolConfig,
    *,
    sam: bool = False,
    penalty: Penalty | None = None,
) -> TrainResult:
    """Train until an epoch's train accuracy reaches ``config.threshold`` or ``config.max_epochs``.

    Parameters
    ----------
    model, optimizer:
        Trained in place. With ``sam=True`` the optimizer's ``step(closure)`` is used.
    loader:
        Re-iterable batches ``(inputs, targets)`` on the model's device (reshuffled per epoch).
    config:
        Gives the threshold and the epoch cap.
    sam:
        Step with ``optimizer.step(closure)`` (for :class:`~torch_dash_optim.SAM`).
    penalty:
        Added to the cross-entropy loss (e.g. :class:`~torch_dash_optim.baselines.L2Init`).

    Returns
    -------
    TrainResult
        The epochs and steps taken and the last epoch's train accuracy and loss; training
        stops early, with ``diverged=True``, if the loss becomes inf or NaN.

    Raises
    ------
    ValueError
        If the loader yields no batch.

    Examples
    --------
    >>> model = torch.nn.Linear(2, 2)
    >>> loader = [(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]))]
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.5)
    >>> result = train_to_threshold(model, opt, loader, ProtocolConfig(max_epochs=200))
    >>> result.train_acc
    1.0
    """
    criterion = nn.CrossEntropyLoss()
    model.train()
    epochs = steps = 0
    while True:
        correct = torch.zeros((), dtype=torch.long)
        total_loss = torch.zeros(())
        seen = batches = 0
        for inputs, targets in loader:
            outputs: list[Tensor] = []

            def closure(
                inputs: Tensor = inputs, targets: Tensor = targets, outputs: list[Tensor] = outputs
            ) -> Tensor:
                optimizer.zero_grad(set_to_none=True)
                out = model(inputs)
                loss = criterion(out, targets)
                if penalty is not None:
                    loss = loss + penalty()
                loss.backward()
                if not outputs:
                    outputs.append(out.detach())
                return loss

            if sam:
                loss = optimizer.step(closure)
            else:
                loss = closure()
                optimizer.step()
            correct = correct.to(targets.device) + (outputs[0].argmax(1) == targets).sum()
            total_loss = total_loss.to(targets.device) + loss.detach()
            seen += len(targets)
            batches += 1
            steps += 1
        epochs += 1
        if seen == 0:
            raise ValueError("the training loader yielded no batch")
        acc, mean_loss = correct.item() / seen, total_loss.item() / batches
        if not math.isfinite(mean_loss):
            return TrainResult(epochs, steps, acc, mean_loss, True)
        if acc >= config.threshold or epochs >= config.max_epochs:
            return TrainResult(epochs, steps, acc, mean_loss, False)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[tuple[Tensor, Tensor]]) -> tuple[float, float]:
    """Return the accuracy and mean cross-entropy of ``model`` (in eval mode) over ``loader``.

    Parameters
    ----------
    model:
        The classifier; it is put in eval mode (and left there).
    loader:
        Batches ``(inputs, targets)`` on the model's device.

    Returns
    -------
    tuple of (float, float)
        The accuracy (between 0 and 1) and the mean cross-entropy per example.

    Raises
    ------
    ValueError
        If the loader yields no batch.

    Examples
    --------
    >>> model = torch.nn.Linear(2, 2)
    >>> acc, loss = evaluate(model, [(torch.randn(4, 2), torch.tensor([0, 1, 0, 1]))])
    >>> 0.0 <= acc <= 1.0
    True
    """
    model.eval()
    correct = seen = 0
    loss_sum = 0.0
    for inputs, targets in loader:
        out = model(inputs)
        correct += int((out.argmax(1) == targets).sum())
        loss_sum += float(nn.functional.cross_entropy(out, targets, reduction="sum"))
        seen += len(targets)
    if seen == 0:
        raise ValueError("the test loader yielded no batch")
    return correct / seen, loss_sum / seen
