"""What each warm-starting method does when new data arrives, before training on it.

Each method is a small :class:`Method` object with one home here: how it builds its learner
(:meth:`Method.new_learner`) and what it does when a chunk arrives (:meth:`Method.on_new_data`).
:data:`BUILTIN` maps the names of :data:`~torch_dash_optim.experiments.config.METHODS` to them.
:func:`~torch_dash_optim.experiments.run_protocol` also takes your own :class:`Method`
objects beside the built-in names; see :class:`Method` for an example.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from .._deprecation import warn_moved
from ..baselines import L2Init, fire_, reset_last_layer_, shrink_perturb_
from ..wrapper import DASHWrapper
from .config import ProtocolConfig
from .training import make_optimizer

__all__ = [
    "BUILTIN",
    "FACTOR_QUANTILES",
    "KIND_LABELS",
    "LAYER_KINDS",
    "Arrival",
    "Learner",
    "Method",
    "factor_stats",
    "get_method",
]

#: The kinds of DASH units the factor statistics are grouped by.
LAYER_KINDS: tuple[str, ...] = ("conv", "linear", "bias")
#: Each layer kind's name in tables and plots.
KIND_LABELS: dict[str, str] = {"conv": "Conv kernels", "linear": "Linear weights", "bias": "Biases"}
#: The factor quantiles recorded per layer kind.
FACTOR_QUANTILES: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9)
_BINS = 20
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


@dataclass
class Learner:
    """The model, optimizer and (for ``l2_init``) penalty of one run.

    ``info`` holds what a method reports about its last action (cleared before each
    experiment); the keys ``dash_mean_factor``, ``dash_at_floor`` and ``dash_factors`` go into
    the experiment's record.

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


@dataclass(frozen=True)
class Arrival:
    """What a method may use when a chunk arrives.

    Attributes
    ----------
    optimizer:
        The optimizer's name, ``"sgd"`` or ``"sam"``.
    config:
        The protocol's settings.
    model_factory:
        Builds a fresh, untrained model (on the CPU; move it to :attr:`device`).
    seen_so_far:
        Returns an iterable over the batches of all chunks so far, in order, the new one
        last, one batch per chunk (what DASH's gradient pass uses).
    device:
        Where the model lives.

    Examples
    --------
    >>> arrival = Arrival("sgd", ProtocolConfig(lr=0.1), lambda: torch.nn.Linear(2, 2), list, torch.device("cpu"))
    >>> type(arrival.new_optimizer(torch.nn.Linear(2, 2))).__name__
    'SGD'
    """

    optimizer: str
    config: ProtocolConfig
    model_factory: Callable[[], nn.Module]
    seen_so_far: Callable[[], Iterable[Any]]
    device: torch.device

    def new_optimizer(self, model: nn.Module) -> Optimizer:
        """A fresh optimizer of the run's kind over ``model``'s parameters."""
        return make_optimizer(model, self.optimizer, self.config)


class Method:
    """One warm-starting method: its learner, and its action when a chunk arrives.

    The base class is a plain warm start: a fresh optimizer at the start, nothing when data
    arrives. A method overrides :meth:`on_new_data` (and :meth:`new_learner` if it needs
    another optimizer or a penalty). ``name`` names the method in records, file names and
    tables (letters, digits, ``_`` and ``-``); ``label`` is its name in tables and plots.

    Examples
    --------
    Your own method, run beside the built-in ones (it must be picklable, i.e. defined at
    module level, for ``jobs > 1``):

    >>> from torch.utils.data import TensorDataset
    >>> from torch_dash_optim.experiments import run_protocol
    >>> class Halve(Method):
    ...     name, label = "halve", "Halve the weights"
    ...     def on_new_data(self, learner, arrival):
    ...         with torch.no_grad():
    ...             for p in learner.model.parameters():
    ...                 p.mul_(0.5)
    ...         return learner
    >>> x, y = torch.randn(60, 4), torch.randint(0, 2, (60,))
    >>> records = run_protocol(TensorDataset(x[:40], y[:40]), TensorDataset(x[40:], y[40:]),
    ...                        lambda: torch.nn.Linear(4, 2), methods=["warm", Halve()],
    ...                        config=ProtocolConfig(num_chunks=2, lr=0.1, max_epochs=3),
    ...                        progress=False)
    >>> sorted({r["method"] for r in records})
    ['halve', 'warm']
    """

    name: str = "warm"
    label: str = "Warm"

    def new_learner(self, model: nn.Module, optimizer: str, config: ProtocolConfig) -> Learner:
        """Return the learner of a new run around ``model`` (already on its device).

        Parameters
        ----------
        model:
            The freshly initialised model.
        optimizer:
            ``"sgd"`` or ``"sam"``.
        config:
            The protocol's settings.

        Returns
        -------
        Learner
            The model and a fresh optimizer over it.
        """
        return Learner(model, make_optimizer(model, optimizer, config))

    def on_new_data(self, learner: Learner, arrival: Arrival) -> Learner:
        """Act on the learner when a chunk arrives (from the second chunk on), before training.

        Parameters
        ----------
        learner:
            The learner trained on the earlier chunks.
        arrival:
            The run's optimizer kind, settings, model factory, device and the data so far.

        Returns
        -------
        Learner
            The learner to train: the same one, changed in place, or a new one.
        """
        return learner

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class Cold(Method):
    """A new model and optimizer at every chunk."""

    name, label = "cold", "Cold (random init)"

    def on_new_data(self, learner: Learner, arrival: Arrival) -> Learner:
        return self.new_learner(arrival.model_factory().to(arrival.device), arrival.optimizer, arrival.config)


class Warm(Method):
    """Keep training the same model and optimizer."""


class WarmResetOptimizer(Method):
    """Keep the model, start a new optimizer."""

    name, label = "warm_rm", "Warm, optimizer reset"

    def on_new_data(self, learner: Learner, arrival: Arrival) -> Learner:
        learner.optimizer = arrival.new_optimizer(learner.model)
        return learner


class ShrinkPerturb(Method):
    """Shrink & Perturb (:func:`~torch_dash_optim.baselines.shrink_perturb_`)."""

    name, label = "sp", "Shrink & Perturb"

    def on_new_data(self, learner: Learner, arrival: Arrival) -> Learner:
        shrink_perturb_(learner.model, arrival.config.sp_shrink, arrival.config.sp_sigma)
        return learner


class L2InitMethod(Method):
    """A penalty pulling the weights towards their initial values (no action on new data)."""

    name, label = "l2_init", "L2 init"

    def new_learner(self, model: nn.Module, optimizer: str, config: ProtocolConfig) -> Learner:
        return Learner(model, make_optimizer(model, optimizer, config), L2Init(model, config.l2_init))


class ResetLastLayer(Method):
    """Re-initialise the last layer."""

    name, label = "reset", "Last-layer reset"

    def on_new_data(self, learner: Learner, arrival: Arrival) -> Learner:
        reset_last_layer_(learner.model)
        return learner


class Fire(Method):
    """FIRE (:func:`~torch_dash_optim.baselines.fire_`) and a new optimizer, as the official code does."""

    name, label = "fire", "FIRE"

    def on_new_data(self, learner: Learner, arrival: Arrival) -> Learner:
        fire_(learner.model)
        learner.optimizer = arrival.new_optimizer(learner.model)
        return learner


def _dash(model: nn.Module, optimizer: Optimizer, config: ProtocolConfig) -> DASHWrapper:
    """DASH around ``optimizer`` with the protocol's ``lambd`` and ``alpha`` and the cross-entropy loss."""
    return DASHWrapper(
        optimizer, model=model, loss_fn=nn.CrossEntropyLoss(), lambd=config.dash_lambd, alpha=config.dash_alpha
    )


class Dash(Method):
    """DASH: :meth:`~torch_dash_optim.DASHWrapper.on_new_data` over all chunks so far.

    The factors' statistics per layer kind (:func:`factor_stats`) go to ``learner.info``.
    """

    name, label = "dash", "DASH"

    def new_learner(self, model: nn.Module, optimizer: str, config: ProtocolConfig) -> Learner:
        return Learner(model, _dash(model, make_optimizer(model, optimizer, config), config))

    def on_new_data(self, learner: Learner, arrival: Arrival) -> Learner:
        if not isinstance(learner.optimizer, DASHWrapper):
            raise TypeError(
                f"the dash method needs the DASHWrapper its new_learner builds, not {type(learner.optimizer).__name__}"
            )
        report = learner.optimizer.on_new_data(arrival.seen_so_far())
        learner.info["dash_mean_factor"] = report.mean_factor
        learner.info["dash_at_floor"] = report.at_floor
        learner.info["dash_factors"] = factor_stats(learner.model, report.factors, arrival.config.dash_lambd)
        return learner


class UniformShrink(Method):
    """The ablation of DASH's direction: shrink every unit DASH would shrink by DASH's mean factor.

    DASH's factors are computed on a copy of the model (the same gradient pass, same settings,
    nothing applied to the run's model); then every parameter DASH would shrink is multiplied
    by their mean over all units (:attr:`DASHReport.mean_factor
    <torch_dash_optim.DASHReport.mean_factor>`). The optimizer state is kept, as DASH's
    default ``state="keep"`` does. The factor goes to ``learner.info["dash_mean_factor"]``.
    """

    name, label = "uniform", "Uniform shrink"

    def on_new_data(self, learner: Learner, arrival: Arrival) -> Learner:
        shadow = copy.deepcopy(learner.model)
        report = _dash(shadow, arrival.new_optimizer(shadow), arrival.config).on_new_data(arrival.seen_so_far())
        factor = report.mean_factor
        params = dict(learner.model.named_parameters())
        with torch.no_grad():
            for name in report.factors:
                params[name].mul_(factor)
        learner.info["dash_mean_factor"] = factor
        return learner


#: The built-in methods, by name, in the order of :data:`~torch_dash_optim.experiments.config.METHODS`.
BUILTIN: dict[str, Method] = {
    m.name: m
    for m in (
        Cold(),
        Warm(),
        WarmResetOptimizer(),
        ShrinkPerturb(),
        L2InitMethod(),
        ResetLastLayer(),
        Fire(),
        UniformShrink(),
        Dash(),
    )
}


def get_method(method: str | Method) -> Method:
    """Return the :class:`Method` of a built-in name, or ``method`` itself if it is one.

    Parameters
    ----------
    method:
        A name of :data:`BUILTIN` or a :class:`Method` object.

    Returns
    -------
    Method
        The method object.

    Raises
    ------
    ValueError
        For an unknown name, or a method object whose ``name`` is not usable in file names.
    TypeError
        For anything else.

    Examples
    --------
    >>> get_method("sp").label
    'Shrink & Perturb'
    """
    if isinstance(method, Method):
        if not isinstance(method.name, str) or not _NAME.fullmatch(method.name):
            raise ValueError(
                f"method {method!r}: name={method.name!r} must be letters, digits, '_' or '-' "
                "(it names the run's files); set the class attribute name"
            )
        return method
    if isinstance(method, str):
        if method not in BUILTIN:
            raise ValueError(f"unknown method {method!r}; use one of {', '.join(BUILTIN)} or a Method object")
        return BUILTIN[method]
    raise TypeError(f"a method is a name ({', '.join(BUILTIN)}) or a Method object, not {type(method).__name__}")


def _kind(module: nn.Module, attr: str) -> str:
    """The layer kind of a module's parameter ``attr``: ``bias``, ``linear`` or ``conv``."""
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


def _on_new_data(
    method: str | Method,
    optimizer: str,
    learner: Learner,
    config: ProtocolConfig,
    model_factory: Callable[[], nn.Module],
    seen_so_far: Callable[[], Iterable[Any]],
    device: Any,
) -> Learner:
    """What the deprecated free ``on_new_data`` did: ``method``'s action, with the arrival built here."""
    arrival = Arrival(optimizer, config, model_factory, seen_so_far, torch.device(device))
    return get_method(method).on_new_data(learner, arrival)


def _new_learner(method: str | Method, optimizer: str, model: nn.Module, config: ProtocolConfig) -> Learner:
    """What the deprecated free ``new_learner`` did."""
    return get_method(method).new_learner(model, optimizer, config)


def __getattr__(name: str) -> Any:
    """The free functions of 0.2.0 (``new_learner``, ``on_new_data``), with a ``DeprecationWarning``."""
    if name == "on_new_data":
        warn_moved(
            f"{__name__}.on_new_data",
            "get_method(method).on_new_data(learner, Arrival(optimizer, config, model_factory, seen_so_far, device))",
        )
        return _on_new_data
    if name == "new_learner":
        warn_moved(f"{__name__}.new_learner", "get_method(method).new_learner(model, optimizer, config)")
        return _new_learner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
