"""What each warm-starting method does when new data arrives, before training on it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from ..baselines import L2Init, fire_, reset_last_layer_, shrink_perturb_
from ..wrapper import DASHWrapper
from .config import ProtocolConfig
from .training import make_optimizer

__all__ = ["FACTOR_QUANTILES", "LAYER_KINDS", "Learner", "factor_stats", "new_learner", "on_new_data"]

#: The kinds of DASH units the factor statistics are grouped by.
LAYER_KINDS: tuple[str, ...] = ("conv", "linear", "bias")
#: The factor quantiles recorded per layer kind.
FACTOR_QUANTILES: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9)
_BINS = 20


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

    Parameters
    ----------
    method:
        One of :data:`~torch_dash_optim.experiments.config.METHODS`.
    optimizer:
        One of :data:`~torch_dash_optim.experiments.config.OPTIMIZERS` (``"sgd"`` or ``"sam"``).
    model:
        The model to train.
    config:
        The protocol's settings (learning rate, DASH and L2 Init settings, ...).

    Returns
    -------
    Learner
        The model, its optimizer (a :class:`~torch_dash_optim.DASHWrapper` for ``dash``) and,
        for ``l2_init``, the penalty.

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
    * ``fire``: FIRE (:func:`~torch_dash_optim.baselines.fire_`) and a new optimizer, as the
      official code does at every new chunk;
    * ``dash``: :meth:`~torch_dash_optim.DASHWrapper.on_new_data` over ``seen_so_far()`` (all chunks so far in
      order, the new one last); the factors' statistics per layer kind (:func:`factor_stats`)
      go to ``learner.info``.

    Parameters
    ----------
    method:
        One of :data:`~torch_dash_optim.experiments.config.METHODS`.
    optimizer:
        One of :data:`~torch_dash_optim.experiments.config.OPTIMIZERS`.
    learner:
        The learner trained on the earlier chunks.
    config:
        The protocol's settings.
    model_factory:
        Builds a fresh, untrained model (used by ``cold``).
    seen_so_far:
        Returns an iterable over the batches of all chunks so far, in order, the new one last
        (used by ``dash``).
    device:
        Where the model lives.

    Returns
    -------
    Learner
        The learner to train: the same one, changed in place, or a new one for ``cold``.

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
    elif method == "fire":
        fire_(learner.model)
        learner.optimizer = make_optimizer(learner.model, optimizer, config)
    elif method == "dash":
        assert isinstance(learner.optimizer, DASHWrapper)
        report = learner.optimizer.on_new_data(seen_so_far())
        learner.info["dash_mean_factor"] = report.mean_factor
        learner.info["dash_at_floor"] = report.at_floor
        learner.info["dash_factors"] = factor_stats(learner.model, report.factors, config.dash_lambd)
    return learner


def _kind(module: nn.Module, attr: str) -> str:
    if attr == "bias":
        return "bias"
    return "linear" if isinstance(module, nn.Linear) else "conv"


def factor_stats(model: nn.Module, factors: dict[str, Tensor], lambd: float) -> dict[str, dict[str, Any]]:
    """Summarise DASH's factors per layer kind: units, share at the floor, mean, quantiles, histogram.

    Parameters
    ----------
    model:
        The model whose parameters the factors belong to (to tell conv from Linear weights).
    factors:
        :attr:`DASHReport.factors <torch_dash_optim.DASHReport.factors>`: per parameter name,
        its factors (one per unit).
    lambd:
        The floor; a factor ``<= lambd`` counts as at the floor.

    Returns
    -------
    dict
        Per kind present (of :data:`LAYER_KINDS`): ``units``, ``at_floor`` (a fraction),
        ``mean``, ``q10``, ``q25``, ``q50``, ``q75``, ``q90`` and ``hist`` (counts in 20
        equal bins over [0, 1]).

    Examples
    --------
    >>> model = torch.nn.Linear(3, 2)
    >>> stats = factor_stats(model, {"weight": torch.tensor([[0.3], [0.9]])}, 0.3)
    >>> stats["linear"]["units"], stats["linear"]["at_floor"], stats["linear"]["q50"]
    (2, 0.5, 0.6)
    """
    kinds: dict[str, str] = {}
    for mname, module in model.named_modules():
        for attr, _p in module.named_parameters(recurse=False):
            kinds[f"{mname}.{attr}" if mname else attr] = _kind(module, attr)
    pooled: dict[str, list[Tensor]] = {}
    for name, f in factors.items():
        pooled.setdefault(kinds.get(name, "linear"), []).append(f.detach().flatten().float().cpu())
    out: dict[str, dict[str, Any]] = {}
    for kind in LAYER_KINDS:
        if kind not in pooled:
            continue
        f = torch.cat(pooled[kind])
        at_floor = float((f <= lambd).double().mean())  # compared in the factors' float32, as the report
        f = f.double()
        q = torch.quantile(f, torch.tensor(FACTOR_QUANTILES, dtype=f.dtype)).tolist()
        out[kind] = {
            "units": int(f.numel()),
            "at_floor": round(at_floor, 6),
            "mean": round(float(f.mean()), 6),
            **{f"q{round(100 * level)}": round(v, 6) for level, v in zip(FACTOR_QUANTILES, q, strict=True)},
            "hist": torch.histc(f, bins=_BINS, min=0.0, max=1.0).long().tolist(),
        }
    return out
