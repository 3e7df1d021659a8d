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

__all__ = ["Metric", "TrainResult", "evaluate", "make_optimizer", "train_to_threshold"]

Penalty = Callable[[], Tensor]
#: A loss ``loss_fn(outputs, targets)``: the batch's mean, a 0-dim tensor.
Loss = Callable[[Tensor, Tensor], Tensor]


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
class Metric:
    """A figure of merit of the model's outputs, and the value of it that ends an experiment.

    The protocol trains each experiment until an epoch's train value of the metric (over the
    epoch's batches, in train mode) reaches ``threshold``: ``>= threshold`` when
    ``higher_is_better``, ``<= threshold`` otherwise (or until the epoch cap). Without a
    metric the protocol uses the train accuracy and
    ``threshold`` of :class:`~torch_dash_optim.experiments.ProtocolConfig`.

    Attributes
    ----------
    fn:
        ``fn(outputs, targets)``: one value per example (shape ``(batch,)``), or the batch's
        mean (a 0-dim tensor). An epoch's value is the mean over its examples.
    threshold:
        The value that ends an experiment's training.
    higher_is_better:
        ``True`` for a score (an F1, an R²), ``False`` for an error (a mean absolute error).
    name:
        Its name in the saved settings.

    Examples
    --------
    A regression model trained until its mean absolute error is at most 0.05:

    >>> mae = Metric(lambda out, y: (out - y).abs().mean(1), threshold=0.05, higher_is_better=False, name="mae")
    >>> mae.reached(0.04), mae.reached(0.06)
    (True, False)
    """

    fn: Callable[[Tensor, Tensor], Tensor]
    threshold: float
    higher_is_better: bool = True
    name: str = "metric"

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise TypeError(f"Metric fn must be a callable fn(outputs, targets); got {type(self.fn).__name__}")
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) or not math.isfinite(
            self.threshold
        ):
            raise ValueError(f"Metric threshold={self.threshold!r} must be a finite number")

    def reached(self, value: float) -> bool:
        """Whether an epoch's ``value`` ends the experiment's training."""
        return value >= self.threshold if self.higher_is_better else value <= self.threshold


def _correct(outputs: Tensor, targets: Tensor) -> Tensor:
    """Per example, whether the largest logit is the target class (the accuracy's values)."""
    return outputs.argmax(1) == targets


def _batch_sum(metric: Metric | None, outputs: Tensor, targets: Tensor, n: int) -> Tensor:
    """The sum over a batch's ``n`` examples of the metric (the number correct, for the accuracy)."""
    if metric is None:
        return _correct(outputs, targets).sum()
    values = torch.as_tensor(metric.fn(outputs, targets)).detach().cpu().double()  # float64: not on every device
    if values.ndim == 0:
        return values * n
    if tuple(values.shape) != (n,):
        raise ValueError(
            f"metric {metric.name!r} returned shape {tuple(values.shape)} for a batch of {n}; return one value "
            "per example (shape (batch,)) or the batch's mean (a 0-dim tensor)"
        )
    return values.sum()


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
        Train accuracy of the last epoch, over its batches in train mode, in [0, 1]; ``None``
        when a :class:`Metric` was given instead.
    train_loss:
        Train loss of the last epoch (the mean of its batches' losses), in train mode.
    diverged:
        The loss became inf/NaN; training stopped there.
    train_metric:
        With a :class:`Metric`, its value over the last epoch; else ``None``.

    Examples
    --------
    >>> TrainResult(epochs=3, steps=30, train_acc=1.0, train_loss=0.01, diverged=False).steps
    30
    """

    epochs: int
    steps: int
    train_acc: float | None
    train_loss: float
    diverged: bool
    train_metric: float | None = None


def train_to_threshold(
    model: nn.Module,
    optimizer: Optimizer,
    loader: Iterable[tuple[Any, Tensor]],
    config: ProtocolConfig,
    *,
    sam: bool = False,
    penalty: Penalty | None = None,
    loss_fn: Loss | None = None,
    metric: Metric | None = None,
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
        Added to the loss (e.g. :class:`~torch_dash_optim.baselines.L2Init`).
    loss_fn:
        ``loss_fn(outputs, targets)``, the batch's mean loss; ``None``: the cross-entropy.
    metric:
        What ends training instead of the train accuracy and ``config.threshold`` (see
        :class:`Metric`); ``None``: the accuracy.

    Returns
    -------
    TrainResult
        The epochs and steps taken and the last epoch's train accuracy (or metric) and loss;
        training stops early, with ``diverged=True``, if the loss becomes inf or NaN.

    Raises
    ------
    ValueError
        If the loader yields no batch, or the metric returns a value of the wrong shape.

    Examples
    --------
    >>> model = torch.nn.Linear(2, 2)
    >>> loader = [(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]))]
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.5)
    >>> result = train_to_threshold(model, opt, loader, ProtocolConfig(max_epochs=200))
    >>> result.train_acc
    1.0
    """
    criterion = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()
    model.train()
    epochs = steps = 0
    while True:
        score = torch.zeros((), dtype=torch.long if metric is None else torch.float64)
        total_loss = torch.zeros(())
        seen = batches = 0
        for inputs, targets in loader:
            outputs: list[Tensor] = []

            def closure(inputs: Any = inputs, targets: Tensor = targets, outputs: list[Tensor] = outputs) -> Tensor:
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
            n = len(targets)
            score = score.to(targets.device if metric is None else "cpu") + _batch_sum(metric, outputs[0], targets, n)
            total_loss = total_loss.to(targets.device) + loss.detach()
            seen += n
            batches += 1
            steps += 1
        epochs += 1
        if seen == 0:
            raise ValueError("the training loader yielded no batch")
        value, mean_loss = score.item() / seen, total_loss.item() / batches
        acc, custom = (value, None) if metric is None else (None, value)
        if not math.isfinite(mean_loss):
            return TrainResult(epochs, steps, acc, mean_loss, True, custom)
        reached = value >= config.threshold if metric is None else metric.reached(value)
        if reached or epochs >= config.max_epochs:
            return TrainResult(epochs, steps, acc, mean_loss, False, custom)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[Any, Tensor]],
    *,
    loss_fn: Loss | None = None,
    metric: Metric | None = None,
) -> tuple[float, float]:
    """Return the accuracy (or ``metric``) and mean loss of ``model`` (in eval mode) over ``loader``.

    Parameters
    ----------
    model:
        The model; it is put in eval mode (and left there).
    loader:
        Batches ``(inputs, targets)`` on the model's device.
    loss_fn:
        ``loss_fn(outputs, targets)``, the batch's mean loss; ``None``: the cross-entropy.
    metric:
        Measured instead of the accuracy (see :class:`Metric`).

    Returns
    -------
    tuple of (float, float)
        The accuracy (between 0 and 1), or the metric's mean over the examples, and the mean
        loss per example.

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
    seen = 0
    score = 0 if metric is None else 0.0
    loss_sum = 0.0
    for inputs, targets in loader:
        out = model(inputs)
        n = len(targets)
        if metric is None:
            score += int(_correct(out, targets).sum())
        else:
            score += float(_batch_sum(metric, out, targets, n))
        if loss_fn is None:
            loss_sum += float(nn.functional.cross_entropy(out, targets, reduction="sum"))
        else:
            loss_sum += float(loss_fn(out, targets)) * n
        seen += n
    if seen == 0:
        raise ValueError("the test loader yielded no batch")
    return score / seen, loss_sum / seen
