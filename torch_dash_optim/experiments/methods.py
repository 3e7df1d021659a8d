"""What each warm-starting method does when new data arrives, before training on it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from torch import nn
from torch.optim import Optimizer

from ..baselines import L2Init, reset_last_layer_, shrink_perturb_
from ..wrapper import DASHWrapper
from .config import ProtocolConfig
from .training import make_optimizer

__all__ = ["Learner", "new_learner", "on_new_data"]


@dataclass
class Learner:
    """The model, optimizer and (for ``l2_init``) penalty of one run.

    Examples
    --------
    >>> model = torch.nn.Linear(2, 2)
    >>> Learner(model, torch.optim.SGD(model.parameters(), lr=0.1)).penalty is None
    True
    """

    model: nn.Module
    optimizer: Optimizer
    penalty: L2Init | None = None
    info: dict[str, Any] = field(default_factory=dict)


def new_learner(method: str, optimizer: str, model: nn.Module, config: ProtocolConfig) -> Learner:
    """Return a fresh learner: ``dash`` wraps its optimizer, ``l2_init`` anchors at ``model``.

    Examples
    --------
    >>> learner = new_learner("dash", "sgd", torch.nn.Linear(2, 2), ProtocolConfig())
    >>> type(learner.optimizer).__name__
    'DASHWrapper'
    """
    opt = make_optimizer(model, optimizer, config)
    if method == "dash":
        opt = DASHWrapper(
            opt, model=model, loss_fn=nn.CrossEntropyLoss(), lambd=config.dash_lambd, alpha=config.dash_alpha
        )
    penalty = L2Init(model, config.l2_init) if method == "l2_init" else None
    return Learner(model, opt, penalty)


def on_new_data(
    method: str,
    optimizer: str,
    learner: Learner,
    config: ProtocolConfig,
    model_factory: Callable[[], nn.Module],
    seen_so_far: Callable[[], Iterable[Any]],
    device: Any,
) -> Learner:
    """Apply ``method``'s action when a chunk arrives (from the second chunk on).

    * ``cold``: a new model and optimizer; ``warm``, ``l2_init``: nothing;
    * ``warm_rm``: a new optimizer; ``sp``: Shrink & Perturb; ``reset``: the last layer is
      re-initialised;
    * ``dash``: :meth:`~torch_dash_optim.DASHWrapper.on_new_data` over ``seen_so_far()`` (all chunks so far in
      order, the new one last).

    Returns the learner to train (the same one, changed in place, or a new one for ``cold``).

    Examples
    --------
    >>> config = ProtocolConfig()
    >>> learner = new_learner("sp", "sgd", torch.nn.Linear(2, 2), config)
    >>> w = learner.model.weight.detach().clone()
    >>> learner = on_new_data("sp", "sgd", learner, config, lambda: torch.nn.Linear(2, 2), list, "cpu")
    >>> bool((learner.model.weight - 0.3 * w).abs().max() < 0.1)
    True
    """
    if method == "cold":
        return new_learner(method, optimizer, model_factory().to(device), config)
    if method == "warm_rm":
        learner.optimizer = make_optimizer(learner.model, optimizer, config)
    elif method == "sp":
        shrink_perturb_(learner.model, config.sp_shrink, config.sp_sigma)
    elif method == "reset":
        reset_last_layer_(learner.model)
    elif method == "dash":
        assert isinstance(learner.optimizer, DASHWrapper)
        report = learner.optimizer.on_new_data(seen_so_far())
        learner.info["dash_mean_factor"] = report.mean_factor
    return learner
