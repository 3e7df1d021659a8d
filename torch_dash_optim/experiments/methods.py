"""What each warm-starting method does when new data arrives, before training on it.

Each method is a small :class:`Method` object with one home here: how it builds its learner
(:meth:`Method.new_learner`) and what it does when a chunk arrives (:meth:`Method.on_new_data`).
:data:`BUILTIN` maps the names of :data:`~torch_dash_optim.experiments.config.METHODS` to them.
:func:`~torch_dash_optim.experiments.run_protocol` also takes your own :class:`Method`
objects beside the built-in names; see :class:`Method` for an example.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from .._deprecation import warn_moved
from ..baselines import L2Init, fire_, reset_last_layer_, shrink_perturb_
from ..report import DASHReport
from ..selection import select
from ..wrapper import DASHWrapper
from .config import ProtocolConfig
from .training import make_optimizer

__all__ = [
    "ALIASES",
    "BUILTIN",
    "FACTOR_QUANTILES",
    "KIND_LABELS",
    "LAYER_KINDS",
    "Arrival",
    "Learner",
    "Method",
    "factor_stats",
    "get_method",
    "layer_kinds",
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
    loss_fn:
        The run's loss, ``loss_fn(outputs, targets)`` (``run_protocol(loss_fn=...)``); ``None``:
        the cross-entropy. DASH's gradient pass, and its controls', use it.

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
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None

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
    """FIRE (:func:`~torch_dash_optim.baselines.fire_`, mixing weight ``config.fire_alpha``) and a new optimizer.

    The new optimizer is what the official code does at every new chunk.
    """

    name, label = "fire", "FIRE"

    def on_new_data(self, learner: Learner, arrival: Arrival) -> Learner:
        fire_(learner.model, alpha=arrival.config.fire_alpha)
        learner.optimizer = arrival.new_optimizer(learner.model)
        return learner


def _dash(
    model: nn.Module, optimizer: Optimizer, config: ProtocolConfig, loss_fn: Callable[..., Tensor] | None = None
) -> DASHWrapper:
    """DASH around ``optimizer`` with the protocol's ``lambd`` and ``alpha``, and ``loss_fn`` (or cross-entropy)."""
    return DASHWrapper(
        optimizer,
        model=model,
        loss_fn=loss_fn if loss_fn is not None else nn.CrossEntropyLoss(),
        lambd=config.dash_lambd,
        alpha=config.dash_alpha,
    )


class Dash(Method):
    """DASH: :meth:`~torch_dash_optim.DASHWrapper.on_new_data` over all chunks so far, with the run's loss.

    The factors' statistics per layer kind (:func:`factor_stats`) go to ``learner.info``.
    """

    name, label = "dash", "DASH"

    def new_learner(self, model: nn.Module, optimizer: str, config: ProtocolConfig) -> Learner:
        return Learner(model, _dash(model, make_optimizer(model, optimizer, config), config))

    def on_new_data(self, learner: Learner, arrival: Arrival) -> Learner:
        self.shrink(learner, arrival)
        return learner

    def shrink(self, learner: Learner, arrival: Arrival) -> DASHReport:
        """DASH's call on the learner, its statistics put in ``learner.info``; return its report.

        Parameters
        ----------
        learner:
            The learner of :meth:`new_learner`, whose optimizer is the :class:`~torch_dash_optim.DASHWrapper`.
        arrival:
            The data so far and the settings.

        Returns
        -------
        DASHReport
            What the call did, its factors included.
        """
        if not isinstance(learner.optimizer, DASHWrapper):
            raise TypeError(
                f"the dash method needs the DASHWrapper its new_learner builds, not {type(learner.optimizer).__name__}"
            )
        report = learner.optimizer.on_new_data(arrival.seen_so_far(), loss_fn=arrival.loss_fn)
        learner.info["dash_mean_factor"] = report.mean_factor
        learner.info["dash_at_floor"] = report.at_floor
        learner.info["dash_factors"] = factor_stats(learner.model, report.factors, arrival.config.dash_lambd)
        return report


def _dash_report(model: nn.Module, arrival: Arrival) -> DASHReport:
    """DASH's report on ``model`` as it is (same gradient pass and settings as the ``dash`` method), nothing applied."""
    wrapper = _dash(model, arrival.new_optimizer(model), arrival.config, arrival.loss_fn)
    return wrapper.on_new_data(arrival.seen_so_far(), dry_run=True)


def _apply(report: DASHReport, factors: dict[str, Tensor], model: nn.Module) -> None:
    """Multiply ``model``'s parameters by ``factors`` (per name of ``report``), matching names as the report does."""
    replace(report, factors=factors).apply_to(model)


class _DashControl(Method):
    """A control of DASH: DASH's factors from the same gradient pass, changed, then applied to the run's model.

    The factors come from :meth:`DASHWrapper.on_new_data <torch_dash_optim.DASHWrapper.on_new_data>`
    with ``dry_run=True`` on the run's own model (the same pass, settings and ``lambd`` as the
    ``dash`` method; nothing is changed by it), then :meth:`factors` changes them and
    :meth:`DASHReport.apply_to <torch_dash_optim.DASHReport.apply_to>` applies them, matching
    parameter names as the report does. The optimizer state is kept, as DASH's default
    ``state="keep"`` does. The mean factor applied over all units goes to
    ``learner.info["dash_mean_factor"]``.
    """

    def factors(self, report: DASHReport, config: ProtocolConfig) -> dict[str, Tensor]:
        """The factors to apply, per parameter name of ``report``."""
        raise NotImplementedError

    def on_new_data(self, learner: Learner, arrival: Arrival) -> Learner:
        report = _dash_report(learner.model, arrival)
        factors = self.factors(report, arrival.config)
        _apply(report, factors, learner.model)
        units = sum(f.numel() for f in factors.values())
        total = sum(float(f.double().sum()) for f in factors.values())
        learner.info["dash_mean_factor"] = total / units if units else 1.0
        return learner


class UniformGlobal(_DashControl):
    """The global uniform shrink: every unit DASH would shrink, by one factor.

    The factor is ``uniform_factor`` of the
    :class:`~torch_dash_optim.experiments.config.ProtocolConfig` if set, else DASH's
    mean factor over all units at that stage (:attr:`DASHReport.mean_factor
    <torch_dash_optim.DASHReport.mean_factor>`). With DASH's mean, the largest tensor decides the
    factor of every other one; :class:`UniformMatched` keeps each tensor's own shrink.
    Formerly named ``uniform`` (that name still works, with a ``DeprecationWarning``).
    """

    name, label = "uniform_global", "Uniform shrink (global)"

    def factors(self, report: DASHReport, config: ProtocolConfig) -> dict[str, Tensor]:
        factor = report.mean_factor if config.uniform_factor is None else config.uniform_factor
        return {name: torch.full_like(f, factor) for name, f in report.factors.items()}


class UniformMatched(_DashControl):
    """A uniform shrink matched tensor by tensor: each tensor's units, by DASH's mean factor for that tensor.

    Each layer shrinks by as much as under DASH, but every unit of it alike: DASH minus this
    control is what DASH's choice of *which* units to shrink adds to the size of each layer's
    shrink.
    """

    name, label = "uniform_matched", "Uniform shrink (per tensor)"

    def factors(self, report: DASHReport, config: ProtocolConfig) -> dict[str, Tensor]:
        return {name: torch.full_like(f, float(f.double().mean())) for name, f in report.factors.items()}


class Shuffled(_DashControl):
    """DASH's own factors, permuted at random within each tensor.

    Each tensor gets exactly DASH's factors (the same multiset, so the same mean, spread and
    share at the floor), but on units chosen at random: the direction information is destroyed.
    The permutations are drawn from torch's global generator, which the protocol seeds from the
    run's seed and the experiment, so they are reproducible.
    """

    name, label = "shuffled", "Shuffled DASH factors"

    def factors(self, report: DASHReport, config: ProtocolConfig) -> dict[str, Tensor]:
        out = {}
        for name, f in report.factors.items():
            flat = f.reshape(-1)
            perm = torch.randperm(flat.numel()).to(flat.device)
            out[name] = flat[perm].reshape(f.shape)
        return out


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
        UniformGlobal(),
        UniformMatched(),
        Shuffled(),
        Dash(),
    )
}


#: Former names of built-in methods, still accepted with a ``DeprecationWarning``: the new name.
ALIASES: dict[str, str] = {"uniform": "uniform_global"}


def get_method(method: str | Method) -> Method:
    """Return the :class:`Method` of a built-in name, or ``method`` itself if it is one.

    Parameters
    ----------
    method:
        A name of :data:`BUILTIN` (or a former name, :data:`ALIASES`) or a :class:`Method` object.

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
        if method in ALIASES:
            warn_moved(f"the method name {method!r}", repr(ALIASES[method]))
            return BUILTIN[ALIASES[method]]
        if method not in BUILTIN:
            raise ValueError(f"unknown method {method!r}; use one of {', '.join(BUILTIN)} or a Method object")
        return BUILTIN[method]
    raise TypeError(f"a method is a name ({', '.join(BUILTIN)}) or a Method object, not {type(method).__name__}")


def _kind(module: nn.Module, attr: str) -> str:
    """The layer kind of a module's parameter ``attr``: ``bias``, ``linear`` or ``conv``."""
    if attr == "bias":
        return "bias"
    return "linear" if isinstance(module, nn.Linear) else "conv"


def _shape_kind(factor: Tensor) -> str:
    """The layer kind of a parameter found in no module, from its factors' shape (as DASH's shape rule)."""
    return "bias" if factor.ndim <= 1 else "linear" if factor.ndim == 2 else "conv"


def layer_kinds(model: nn.Module, names: Iterable[str]) -> dict[str, str]:
    """The layer kind of each shrunk parameter of a :class:`~torch_dash_optim.DASHReport`, from its module's type.

    The names are resolved as DASH names them (:func:`torch_dash_optim.selection.select` on
    ``model``), so a compiled model (``_orig_mod.``), a DDP wrapper or a child named ``module``
    get the kinds of their real modules.

    Parameters
    ----------
    model:
        The model given to the :class:`~torch_dash_optim.DASHWrapper`.
    names:
        Parameter names of the report (the keys of ``report.factors``).

    Returns
    -------
    dict of str to str
        ``"conv"``, ``"linear"`` or ``"bias"`` per name found; names of no module's parameter
        are left out.

    Examples
    --------
    >>> model = torch.nn.Sequential(torch.nn.Conv1d(1, 2, 3), torch.nn.Linear(2, 2))
    >>> layer_kinds(model, ["0.weight", "0.bias", "1.weight"])
    {'0.weight': 'conv', '0.bias': 'bias', '1.weight': 'linear'}
    """
    owner: dict[int, str] = {}
    for module in model.modules():
        for attr, p in module.named_parameters(recurse=False):
            owner.setdefault(id(p), _kind(module, attr))
    params = [p for p in model.parameters() if not isinstance(p, nn.parameter.UninitializedParameter)]
    targets = select([{"params": params}], model, lambd=0.0, granularity="kernel").targets
    by_name = {t.name: owner[id(t.param)] for t in targets if id(t.param) in owner}
    return {name: by_name[name] for name in names if name in by_name}


def factor_stats(model: nn.Module, factors: dict[str, Tensor], lambd: float) -> dict[str, dict[str, Any]]:
    """Summarise DASH's factors per layer kind: units, share at the floor, mean, quantiles, histogram.

    Parameters
    ----------
    model:
        The model whose parameters the factors belong to (the kind of each comes from the type
        of its module, see :func:`layer_kinds`).
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
    kinds = layer_kinds(model, factors)
    pooled: dict[str, list[Tensor]] = {}
    for name, f in factors.items():
        pooled.setdefault(kinds.get(name) or _shape_kind(f), []).append(f.detach().flatten().float().cpu())
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
