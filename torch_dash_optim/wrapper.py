"""``DASHWrapper``: DASH as a drop-in wrapper for any ``torch.optim`` optimizer.

Beside it, as :mod:`torch.optim` keeps its hook functions beside ``Optimizer``:
:func:`~torch_dash_optim.find_dash` finds the wrapper inside whatever a framework wraps it in
(Accelerate's ``AcceleratedOptimizer``, Lightning's ``LightningOptimizer``, Fabric's optimizer
proxy, timm's ``Lookahead``, ...), and :func:`~torch_dash_optim.on_new_data` calls it, so one
line works everywhere:

.. code-block:: python

   from torch_dash_optim import on_new_data

   report = on_new_data(optimizer, loader)   # whatever object the framework gave you
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from . import functional as F
from ._checks import check_alpha, check_bool, check_choice, check_lambd, check_losses
from ._delegate import DelegatingOptimizer
from ._interrupts import deferred_interrupts
from ._nesting import describe, optimizer_chain, schedule_free_in_eval, set_eval_flag
from .distributed import check_model, local_tensor, sharded_dash_factors_many
from .gather import gather_direction
from .report import DASHReport, param_reports
from .selection import Selection, Target, check_group, check_patterns, migrate_group_keys, select
from .state_policy import STATE_POLICIES, check_policy, plan_state
from .tolerance import check_tol, trim_loader
from .units import UnitRule, check_unit_rules

__all__ = ["AVERAGES", "DASHConfig", "DASHWrapper", "MODES", "find_dash", "on_new_data"]

#: The accepted values of ``average=``.
AVERAGES: tuple[str, ...] = ("ema", "mean")
#: The accepted values of ``mode=``.
MODES: tuple[str, ...] = ("eval", "train")

Criterion = Callable[[Any, Any], Tensor]
BatchLoss = Callable[[Any, Any], Tensor]
Patterns = str | Sequence[str] | None

#: The param-group key under which ``state_dict()`` also saves the DASH settings, in every
#: saved group, so that checkpoint tools that keep only ``state`` and ``param_groups``
#: (``torch.distributed.checkpoint``) keep them too. The live groups hold the key with the
#: value ``None``: DCP's flattened layout (``flatten_optimizer_state_dict=True``) rebuilds the
#: groups from the keys of the live ones, and would drop a key they lack.
SETTINGS_KEY = "dash_settings"


@dataclass(frozen=True)
class DASHConfig:
    """The persistent DASH settings of a wrapper (saved in its ``state_dict``).

    See :class:`DASHWrapper` for the meaning of each field. Values are checked on creation.

    Examples
    --------
    >>> DASHConfig(lambd=0.5).alpha
    0.3
    >>> DASHConfig(alpha=0)
    Traceback (most recent call last):
    ...
    ValueError: alpha=0 is outside (0, 1]; ...
    """

    lambd: float = 0.3
    alpha: float = 0.3
    granularity: str = "kernel"
    average: str = "ema"
    state: str = "keep"
    mode: str = "eval"
    tol: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "lambd", check_lambd(self.lambd))
        object.__setattr__(self, "alpha", check_alpha(self.alpha))
        check_choice("granularity", self.granularity, F.GRANULARITIES)
        check_choice("average", self.average, AVERAGES)
        check_choice("state", self.state, STATE_POLICIES)
        check_choice("mode", self.mode, MODES)
        object.__setattr__(self, "tol", check_tol(self.tol, self.average))


@dataclass
class _Shared:
    """The mutable DASH state of a wrapper, shared with the proxies that copy its ``__dict__``."""

    # Lightning's LightningOptimizer and Fabric's optimizer proxy copy the wrapper's __dict__: the
    # copy holds this same object, so a call counted through the proxy is counted on the wrapper too.

    config: DASHConfig
    calls: int = 0
    busy: str | None = field(default=None)


class DASHWrapper(DelegatingOptimizer):
    r"""Wrap an optimizer with DASH (Direction-Aware SHrinking; Shin et al., NeurIPS 2024).

    Training steps are those of the wrapped optimizer, unchanged. When the training data
    grows, :meth:`on_new_data` takes one gradient pass over the data seen so far and shrinks
    each unit (a Conv kernel slice, a Linear row, a bias vector) of the Conv/Linear layers in
    place:

    .. math::

        G &\leftarrow (1-\alpha)\,G + \alpha\,\bigl(-\nabla_\theta L(B_i)\bigr)
            \quad\text{for the batches } B_1, B_2, \dots \text{ in order, } G_0 = 0 \\
        w_u &\leftarrow \operatorname{clamp}\bigl(\cos(w_u, G_u),\ \lambda,\ 1\bigr)\, w_u

    Units aligned with the negative gradient (learned features) keep their weights; the
    others (memorised noise) shrink, down to :math:`\lambda` times their size. With the
    defaults this is exactly the authors' ``dash`` (their ``utils/train_utils.py``), without
    its copy of the model.

    Parameters
    ----------
    optimizer:
        The optimizer to wrap (SGD, Adam, :class:`~torch_dash_optim.SAM`, ...).
    model:
        The model whose parameters ``optimizer`` updates. It gives the Conv/Linear structure
        and parameter names, and is put in eval mode for the gradient pass. ``None`` selects
        parameters by shape (see :mod:`torch_dash_optim.units`) and needs ``batch_loss``.
    loss_fn:
        ``loss_fn(model(inputs), targets) -> scalar``, for loaders of ``(inputs, targets)``.
    batch_loss:
        ``batch_loss(model, batch) -> scalar``, for any other batch (dicts, Hugging Face
        style). Give ``loss_fn`` or ``batch_loss``, not both; either can also be given to
        :meth:`on_new_data`.
    lambd:
        Floor :math:`\lambda \in [0, 1]` of the factors (default 0.3, the paper's). 1
        disables shrinking.
    alpha:
        EMA weight :math:`\alpha \in (0, 1]` of each batch gradient (default 0.3).
    granularity:
        ``"kernel"`` (default: per Conv ``(out, in)`` kernel slice, per Linear row),
        ``"neuron"`` (per output filter or row) or ``"tensor"`` (one factor per tensor).
        Biases always get one factor for the whole vector.
    average:
        ``"ema"`` (default) or ``"mean"`` (a plain mean of the batch gradients).
    state:
        Optimizer state of shrunk parameters: ``"keep"`` (default, as in the paper),
        ``"scale"`` (first moments times the factors, second moments times their square) or
        ``"reset"`` (dropped). See :mod:`torch_dash_optim.state_policy`.
    mode:
        ``"eval"`` (default, as in the authors' runs: BatchNorm uses running statistics,
        dropout is off) or ``"train"``. Either way, buffers and modes are restored.
    tol:
        Opt-in approximation of the EMA (default 0, exact): skip the forward and backward of
        the first batches whose combined weight in the EMA is at most ``tol``. Needs a loader
        with ``len()``. See :mod:`torch_dash_optim.tolerance`.
    autocast_dtype:
        Run the forward pass of the gradient pass under :class:`torch.autocast` with this dtype
        (an enclosing autocast is honoured anyway). Factors are computed in float32.
    sync:
        All-reduce the gathered direction once across ranks. ``None`` (default) does so
        whenever a process group with more than one rank is initialised.
    include, exclude:
        Glob patterns (a str or a sequence of str) over the qualified parameter names, or the
        names of the modules that hold them: only parameters matching ``include`` are shrunk
        (``None``, the default: every parameter a unit rule shrinks), and never those matching
        ``exclude`` (e.g. ``exclude=["lm_head", "*.wte"]``). :meth:`on_new_data` may override
        either for one call. A pattern that matches no parameter of the optimizer is an error.
        See :mod:`torch_dash_optim.selection`.
    unit_rules:
        Unit rules for this wrapper, by module type (or qualified class name), that add to or
        replace the registered ones: e.g. ``{torch.nn.Embedding: EMBEDDING_ROWS}`` shrinks
        embedding rows (see :mod:`torch_dash_optim.units`).

    Notes
    -----
    Which parameters are shrunk: with a model, those of every module type that has a unit
    rule (``Linear``, ``ConvNd``, ``ConvTransposeNd``, ``MultiheadAttention``, transformers'
    ``Conv1D``, and types registered with
    :func:`~torch_dash_optim.units.register_unit_rule`), each split into units by its
    layout; a weight tied to a module that is not shrunk (a language model's head tied to its
    embedding) is left alone. The report lists every parameter left alone, with the reason.

    Param groups may override ``lambd`` and ``granularity`` with the keys ``"dash_lambd"`` and
    ``"dash_granularity"``, and opt out with ``"dash": False`` (which ``include`` cannot undo).
    The former keys ``"lambd"`` and ``"granularity"`` are refused with an error naming the new
    ones (except ``"lambd"`` where the optimizer owns it: ``torch.optim.ASGD``'s decay).

    Wrapping a ``DASHWrapper`` in another is refused. ``step()`` and ``on_new_data`` refuse to
    run inside the gradient pass (called from the loss or a hook), and ``on_new_data`` refuses
    to run between :meth:`SAM.first_step <torch_dash_optim.SAM.first_step>` and
    ``second_step``.

    Examples
    --------
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
    ...                   model=model, loss_fn=torch.nn.CrossEntropyLoss())
    >>> loader = [(torch.randn(16, 4), torch.randint(0, 3, (16,))) for _ in range(3)]
    >>> for x, y in loader:                      # train as usual
    ...     opt.zero_grad()
    ...     torch.nn.functional.cross_entropy(model(x), y).backward()
    ...     opt.step()
    >>> report = opt.on_new_data(loader)         # the data grew: shrink
    >>> [p.name for p in report.params]
    ['0.weight', '0.bias', '2.weight', '2.bias']
    >>> 0.3 <= report.mean_factor <= 1.0
    True
    """

    def __init__(
        self,
        optimizer: Optimizer,
        model: nn.Module | None = None,
        loss_fn: Criterion | None = None,
        *,
        batch_loss: BatchLoss | None = None,
        lambd: float = 0.3,
        alpha: float = 0.3,
        granularity: str = "kernel",
        average: str = "ema",
        state: str = "keep",
        mode: str = "eval",
        tol: float = 0.0,
        autocast_dtype: torch.dtype | None = None,
        sync: bool | None = None,
        include: Patterns = None,
        exclude: Patterns = None,
        unit_rules: dict[type[nn.Module] | str, UnitRule] | None = None,
    ) -> None:
        _check_not_nested(optimizer)
        self._init_delegate(optimizer)
        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module or None; got {type(model).__name__}")
        check_model(model)
        check_losses(loss_fn, batch_loss)
        if autocast_dtype is not None and not isinstance(autocast_dtype, torch.dtype):
            raise TypeError(f"autocast_dtype must be a torch.dtype such as torch.bfloat16; got {autocast_dtype!r}")
        if autocast_dtype is not None and not autocast_dtype.is_floating_point:
            raise ValueError(
                f"autocast_dtype={autocast_dtype} is not a floating dtype; autocast runs the forward pass in "
                "a lower-precision float: use torch.bfloat16 or torch.float16"
            )
        if sync is not None and not isinstance(sync, bool):
            raise TypeError(f"sync must be True, False or None; got {sync!r}")
        config = DASHConfig(lambd, alpha, granularity, average, state, mode, tol)
        check_policy(config.state, optimizer)  # before any pass: LBFGS cannot follow state="scale"
        self.__dict__["_dash"] = _Shared(config)
        self.model = model
        self.loss_fn = loss_fn
        self.batch_loss = batch_loss
        self.autocast_dtype = autocast_dtype
        self.sync = sync
        self.include = check_patterns(include, "include")
        self.exclude = check_patterns(exclude, "exclude")
        self.unit_rules = check_unit_rules(unit_rules)
        self._select()  # fail early on a model that does not own the optimizer's parameters, or a bad pattern
        self._mark_groups()

    # -- shared mutable state --------------------------------------------------------------
    @property
    def config(self) -> DASHConfig:
        """The DASH settings (a frozen :class:`DASHConfig`; assign a new one to change them)."""
        return self._dash.config

    @config.setter
    def config(self, value: DASHConfig) -> None:
        if not isinstance(value, DASHConfig):
            raise TypeError(f"config must be a DASHConfig; got {type(value).__name__}")
        check_policy(value.state, self._inner)
        self._dash.config = value

    @property
    def _calls(self) -> int:
        return self._dash.calls

    @_calls.setter
    def _calls(self, value: int) -> None:
        self._dash.calls = value

    # -- optimizer protocol ---------------------------------------------------------------
    @property
    def optimizer(self) -> Optimizer:
        """The wrapped optimizer."""
        return self._inner

    @property
    def defaults(self) -> dict[str, Any]:  # type: ignore[override]
        return self._inner.defaults

    @defaults.setter
    def defaults(self, value: dict[str, Any]) -> None:
        self._inner.defaults = value

    @DelegatingOptimizer.param_groups.setter  # the same read-through getter; the setter marks the groups
    def param_groups(self, value: list[dict[str, Any]]) -> None:
        DelegatingOptimizer.param_groups.fset(self, value)
        self._mark_groups()

    def _mark_groups(self) -> None:
        """Put the settings key, valued ``None``, in every live group (see SETTINGS_KEY).

        A value already there is stale: a bare optimizer that loaded a wrapper's checkpoint keeps
        the saved settings in its live groups, and would pass them on in its own checkpoints.
        """
        for group in self._inner.param_groups:
            group[SETTINGS_KEY] = None

    @property
    def num_dash_calls(self) -> int:
        """How many times :meth:`on_new_data` has shrunk the model (saved in ``state_dict``)."""
        return self._calls

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Take a step of the wrapped optimizer and return what it returns (the closure's loss).

        Parameters
        ----------
        closure:
            Passed on to the wrapped optimizer's ``step`` (clears the gradients, computes the
            loss, calls ``backward()`` and returns the loss); ``None`` for a plain step.

        Returns
        -------
        Any
            Whatever the wrapped optimizer's ``step`` returns: the closure's loss, or usually
            ``None`` without a closure.

        Raises
        ------
        RuntimeError
            If it is called while :meth:`on_new_data` is running (from a hook or the loss).

        Notes
        -----
        Step hooks fire as on the bare optimizer, each once and with the wrapper as their
        argument: the global pre-hooks
        (:func:`~torch.optim.optimizer.register_optimizer_step_pre_hook`), the wrapper's own
        pre-hooks, the step, the wrapper's post-hooks, then the global post-hooks.
        """
        if self._dash.busy is not None:
            raise RuntimeError(_reentry("step()", self._dash.busy))
        if closure is None:
            return self._inner.step()
        return self._inner.step(closure)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients, as the wrapped optimizer's ``zero_grad`` does.

        Parameters
        ----------
        set_to_none:
            Set the gradients to ``None`` instead of zeroing them.

        Raises
        ------
        RuntimeError
            If it is called while :meth:`on_new_data` is running (from a hook or the loss): the
            pass accumulates its direction in ``.grad``, which this would clear.
        """
        if self._dash.busy is not None:
            raise RuntimeError(_reentry("zero_grad()", self._dash.busy))
        super().zero_grad(set_to_none=set_to_none)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group (its ``dash``/``dash_lambd``/``dash_granularity`` keys are checked).

        Parameters
        ----------
        param_group:
            The group, as for ``torch.optim.Optimizer.add_param_group``: ``params`` plus any
            options of the wrapped optimizer, and optionally the per-group DASH keys ``dash``,
            ``dash_lambd`` and ``dash_granularity``.

        Raises
        ------
        ValueError
            For a bad DASH key, or, with a model, a parameter that is not one of the model's.
        """
        check_group(param_group, len(self.param_groups), self.defaults)
        if self.model is not None:
            params = param_group.get("params", [])
            params = [params] if isinstance(params, Tensor) else list(params)
            param_group = {**param_group, "params": params}
            owned = {id(p) for p in self.model.parameters()}
            for i, p in enumerate(params):
                if id(p) not in owned:
                    raise ValueError(
                        f"param group new: parameter {i} (shape {tuple(p.shape)}) is not a parameter of the "
                        "model given to DASHWrapper; add the model's own parameters (or wrap with model=None)"
                    )
        self._inner.add_param_group(param_group)
        self._mark_groups()

    def _settings(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "calls": self._calls}

    def _state_dict_body(self) -> dict[str, Any]:
        state_dict = dict(self._inner.state_dict())
        settings = self._settings()
        state_dict["param_groups"] = [{**g, SETTINGS_KEY: dict(settings)} for g in state_dict["param_groups"]]
        state_dict["dash"] = settings
        return state_dict

    def _load_state_dict_body(self, state_dict: dict[str, Any]) -> None:
        dash = state_dict.pop("dash", None)
        groups = state_dict.get("param_groups")
        in_groups = None
        if isinstance(groups, list):
            found = [g[SETTINGS_KEY] for g in groups if isinstance(g, dict) and g.get(SETTINGS_KEY) is not None]
            # The copy in the groups stands in for the "dash" entry only where a tool dropped that
            # entry: torch.distributed.checkpoint, which names parameters by their qualified names.
            # A state_dict with ordinal ids and no "dash" entry is a bare optimizer's, and a copy
            # in its groups was left there by a bare optimizer that loaded a wrapper's checkpoint.
            in_groups = found[0] if found and (dash is not None or _names_params(groups)) else None
            clean = [{k: v for k, v in g.items() if k != SETTINGS_KEY} for g in groups]
            if dash is not None and in_groups is None:
                clean = [migrate_group_keys(g, self.defaults) for g in clean]  # saved before the key rename
            state_dict["param_groups"] = clean
        # The "dash" entry, else the copy in the groups (all that torch.distributed.checkpoint
        # keeps); neither in a bare optimizer's state_dict: then keep ours.
        dash = dash if dash is not None else in_groups
        config, calls = self.config, self._calls
        if dash is not None:
            try:
                config, calls = DASHConfig(**dash["config"]), int(dash["calls"])
            except (KeyError, TypeError) as err:
                raise ValueError(f"the 'dash' entry of this state_dict is malformed: {err}") from None
        self._inner.load_state_dict(state_dict)
        self._mark_groups()
        self.config, self._calls = config, calls

    def __repr__(self) -> str:
        c = self.config
        return (
            f"DASHWrapper(lambd={c.lambd}, alpha={c.alpha}, granularity={c.granularity!r}, "
            f"average={c.average!r}, state={c.state!r}, mode={c.mode!r},\n{self._inner!r})"
        )

    # -- DASH -----------------------------------------------------------------------------
    def on_new_data(
        self,
        loader: Iterable[Any],
        *,
        loss_fn: Criterion | None = None,
        batch_loss: BatchLoss | None = None,
        tol: float | None = None,
        include: Patterns = None,
        exclude: Patterns = None,
        dry_run: bool = False,
    ) -> DASHReport:
        """Take one gradient pass over ``loader`` and shrink the model in place.

        Call it when the training data grows, before training on the grown data. Pass all
        the data seen so far, with the new data last: the EMA weighs late batches most.

        Parameters
        ----------
        loader:
            Iterable of batches, e.g. a :class:`~torch.utils.data.DataLoader` with
            ``shuffle=False``. Batches are moved to the parameters' device.
        loss_fn, batch_loss:
            Override the wrapper's loss for this call (see :class:`DASHWrapper`).
        tol:
            Override the wrapper's ``tol`` for this call (see :class:`DASHWrapper`).
        include, exclude:
            Override the wrapper's ``include`` or ``exclude`` patterns for this call (each on
            its own; ``exclude=()`` drops the wrapper's exclusions). See :class:`DASHWrapper`.
        dry_run:
            Compute and return the report, factors included, and change nothing: the weights,
            their gradients, the optimizer state, the buffers, module modes (and a schedule-free
            optimizer's eval or train mode) and the call count stay bit for bit as they were.
            The report's factors are those a real call on the same data would apply, and its
            :attr:`~DASHReport.dry_run` is ``True``.

        Returns
        -------
        DASHReport
            Per-parameter factor statistics, skipped parameters and the call count (for a dry
            run, the count the call would have had).

        Raises
        ------
        ValueError, TypeError
            For an empty loader, a missing loss, or a batch or loss it cannot use.
        NonFiniteGradientError
            If the gathered gradient is inf or NaN.

        Notes
        -----
        On any failure (including :class:`KeyboardInterrupt`) the wrapped parameters and their
        gradients, the model's buffers and module modes, and this optimizer's state are left
        exactly as they were. What a custom loss changes outside them (another optimizer's
        step, say) is the loss's own doing.

        A schedule-free optimizer (``schedulefree``) in eval mode holds its averaged weights in
        the parameters: it is switched to train mode for the call (the pass and the shrink act
        on the training point, as in training) and back to eval mode afterwards.
        """
        shared = self._dash
        if shared.busy is not None:
            raise RuntimeError(_reentry("on_new_data", shared.busy))
        if not isinstance(loader, Iterable):
            raise TypeError(f"loader must be an iterable of batches; got {type(loader).__name__}")
        _check_not_perturbed(self._inner)
        check_bool("dry_run", dry_run)
        compute_loss = self._loss_for(loss_fn, batch_loss)
        tol = self.config.tol if tol is None else check_tol(tol, self.config.average)
        include = self.include if include is None else check_patterns(include, "include")
        exclude = self.exclude if exclude is None else check_patterns(exclude, "exclude")
        calls = shared.calls
        # A schedule-free optimizer in eval mode holds its averaged point x in the parameters;
        # DASH's pass and shrink belong to the training point y: switch to train mode for the
        # call and back to eval mode with the shrink. The parameters are copied first (only in
        # this case), so that a failure puts them back bit for bit.
        in_eval = schedule_free_in_eval(self._inner)
        saved = [(p, p.detach().clone()) for o in in_eval for g in o.param_groups for p in g["params"]]
        shared.busy = "on_new_data"
        try:
            for o in in_eval:
                o.train()
            selection = self._select(include, exclude)
            # A dry run puts the random state back too: in train mode (dropout), the real call
            # that follows draws the same masks, and gets the same factors.
            with torch.random.fork_rng(devices=_cuda_devices(selection.trainable), enabled=dry_run):
                report = self._shrink(
                    selection, loader, compute_loss, tol, after=[o.eval for o in in_eval], dry_run=dry_run
                )
            if dry_run and in_eval:
                _restore_eval_mode(in_eval, saved)
            return report
        except BaseException as err:
            if in_eval and shared.calls == calls:
                _restore_eval_mode(in_eval, saved)
            if shared.calls != calls:  # interrupted after the shrink was committed
                note = (
                    f"DASHWrapper.on_new_data was interrupted after its shrink had completed: the weights "
                    f"and optimizer state are shrunk and the call was counted (num_dash_calls={shared.calls}); "
                    "do not call it again for this data"
                )
            else:
                note = (
                    "DASHWrapper.on_new_data failed; the wrapped parameters and their grads, the model's "
                    "buffers and modes, and this optimizer's state were left as they were"
                )
            if hasattr(err, "add_note"):
                err.add_note(note)
            raise
        finally:
            shared.busy = None

    def _select(self, include: Sequence[str] | None = None, exclude: Sequence[str] | None = None) -> Selection:
        cfg = self.config
        return select(
            self.param_groups,
            self.model,
            lambd=cfg.lambd,
            granularity=cfg.granularity,
            owned=self.defaults,
            include=self.include if include is None else include,
            exclude=self.exclude if exclude is None else exclude,
            unit_rules=self.unit_rules,
        )

    def _shrink(
        self,
        selection: Selection,
        loader: Iterable[Any],
        compute_loss: Callable[[Any], Tensor],
        tol: float,
        after: Sequence[Callable[[], Any]] = (),
        dry_run: bool = False,
    ) -> DASHReport:
        cfg = self.config
        loader, skipped_batches = trim_loader(loader, alpha=cfg.alpha, average=cfg.average, tol=tol)
        targets = selection.targets
        result = gather_direction(
            [t.param for t in targets],
            loader,
            compute_loss,
            alpha=cfg.alpha,
            average=cfg.average,
            model=self.model,
            trainable=selection.trainable,
            train_mode=cfg.mode == "train",
            device=_device_of(targets, self.param_groups),
            autocast_dtype=self.autocast_dtype,
            sync=self._should_sync(),
            names=[t.name for t in targets],
        )
        skipped = dict(selection.skipped)
        shrunk: list[tuple[Target, Tensor]] = []
        with torch.no_grad():
            for target, direction in zip(targets, result.directions):
                if direction is None:
                    skipped[target.name] = "no gradient reached it"
                    continue
                shrunk.append((target, direction))
            kept = [t for t, _ in shrunk]
            factors = sharded_dash_factors_many(
                [t.param for t in kept],
                [d for _, d in shrunk],
                [t.dims for t in kept],
                [t.lambd for t in kept],
                groups=[t.groups for t in kept],
            )
            shrunk = list(zip(kept, factors, strict=True))
        num_batches = result.num_batches
        del result  # frees the gathered directions before the shrink
        plan = plan_state(cfg.state, self._inner, [(t.name, t.param, f) for t, f in shrunk])
        report = DASHReport(
            self._calls + 1,
            num_batches,
            param_reports(
                [(t.name, tuple(t.param.shape), t.lambd, f) for t, f in shrunk],
                units=[_units(t, f) for t, f in shrunk],
            ),
            skipped,
            plan.unknown,
            skipped_batches=skipped_batches,
            dry_run=dry_run,
            factors={t.name: f for t, f in shrunk},
        )
        if dry_run:  # the report is computed before anything changes: stop here
            return report
        # Everything is computed; now change the model and state in one uninterruptible step.
        with deferred_interrupts():
            F.shrink_(
                [local_tensor(t) for t in [t.param for t, _ in shrunk] + plan.tensors],
                [f for _, f in shrunk] + plan.factors,
            )
            plan.apply_drops()
            self._calls += 1
            for fn in after:
                fn()
        return report

    def _loss_for(self, loss_fn: Criterion | None, batch_loss: BatchLoss | None) -> Callable[[Any], Tensor]:
        check_losses(loss_fn, batch_loss)
        if loss_fn is None and batch_loss is None:
            loss_fn, batch_loss = self.loss_fn, self.batch_loss
        model = self.model
        if batch_loss is not None:
            return lambda batch: batch_loss(model, batch)
        if loss_fn is None:
            raise ValueError(
                "on_new_data needs a loss: pass loss_fn=criterion (called as criterion(model(inputs), "
                "targets)) or batch_loss=fn (called as fn(model, batch)) to DASHWrapper or to on_new_data"
            )
        if model is None:
            raise ValueError(
                "loss_fn needs the model to compute outputs, but model=None; pass model=... to "
                "DASHWrapper, or use batch_loss=fn (called as fn(None, batch))"
            )
        criterion = loss_fn

        def compute(batch: Any) -> Tensor:
            if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
                kind = f"a {type(batch).__name__}" + (
                    f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else ""
                )
                raise TypeError(
                    f"loss_fn expects batches of (inputs, targets), but the loader yielded {kind}; "
                    "for other batches pass batch_loss=fn, called as fn(model, batch) -> loss"
                )
            inputs, targets = batch
            return criterion(model(inputs), targets)

        return compute

    def _should_sync(self) -> bool:
        if self.sync is not None:
            return self.sync
        dist = torch.distributed
        return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def find_dash(optimizer: Any) -> DASHWrapper:
    """Return the :class:`~torch_dash_optim.DASHWrapper` inside ``optimizer``.

    ``optimizer`` may be the wrapper itself or any chain of wrappers around it (or inside
    it) that keep the optimizer they wrap as an attribute: ``AcceleratedOptimizer``,
    ``LightningOptimizer``, Fabric's optimizer, timm's ``Lookahead``, ``SAM``,
    schedule-free's ``ScheduleFreeWrapper``, ``ZeroRedundancyOptimizer``. A proxy that copies
    the wrapper (Lightning, Fabric) leads to the wrapper it copies.

    Parameters
    ----------
    optimizer:
        The optimizer object at hand.

    Returns
    -------
    DASHWrapper
        The wrapper whose :meth:`~torch_dash_optim.DASHWrapper.on_new_data` to call.

    Raises
    ------
    TypeError
        If there is no ``DASHWrapper`` in the chain; the message names what was found.

    Examples
    --------
    >>> from torch_dash_optim import DASHWrapper, find_dash
    >>> net = torch.nn.Linear(3, 2)
    >>> opt = DASHWrapper(torch.optim.SGD(net.parameters(), lr=0.1), model=net)
    >>> find_dash(opt) is opt
    True
    >>> find_dash(torch.optim.SGD(net.parameters(), lr=0.1))
    Traceback (most recent call last):
    ...
    TypeError: no DASHWrapper found in SGD; ...
    """
    chain = optimizer_chain(optimizer)
    found = [o for o in chain if isinstance(o, DASHWrapper)]
    # Lightning's and Fabric's proxies copy the wrapper and keep it as ``_optimizer``.
    proxies = {id(o) for o in found if isinstance(vars(o).get("_optimizer"), DASHWrapper)}
    real = [o for o in found if id(o) not in proxies]
    if len(real) == 1:
        return real[0]
    if not real:
        raise TypeError(
            f"no DASHWrapper found in {describe(chain)}; wrap the base optimizer before handing it to the "
            "framework, e.g. DASHWrapper(torch.optim.AdamW(model.parameters()), model=model, loss_fn=...), "
            "and pass that wrapper (or what the framework made of it)"
        )
    raise TypeError(
        f"found {len(real)} separate DASHWrappers in {describe(chain)}; wrap the base optimizer in one "
        "DASHWrapper and call find_dash on the object that holds it"
    )


def on_new_data(
    optimizer: Any,
    loader: Iterable[Any],
    *,
    loss_fn: Criterion | None = None,
    batch_loss: BatchLoss | None = None,
    tol: float | None = None,
    include: Patterns = None,
    exclude: Patterns = None,
    dry_run: bool = False,
) -> DASHReport:
    """Call :meth:`DASHWrapper.on_new_data <torch_dash_optim.DASHWrapper.on_new_data>` through any wrapper.

    Equivalent to ``find_dash(optimizer).on_new_data(loader, ...)``: the real wrapper is
    called, so its call count and checkpoints are right whatever proxy ``optimizer`` is.

    Parameters
    ----------
    optimizer:
        The wrapper, or any object around it (see :func:`find_dash`).
    loader:
        The data seen so far, new data last, e.g. a ``DataLoader`` with ``shuffle=False``.
    loss_fn, batch_loss, tol, include, exclude, dry_run:
        As in :meth:`DASHWrapper.on_new_data <torch_dash_optim.DASHWrapper.on_new_data>`.

    Returns
    -------
    DASHReport
        What the call did.

    Raises
    ------
    TypeError
        If ``optimizer`` holds no ``DASHWrapper`` (and as ``on_new_data`` does).

    Examples
    --------
    >>> from torch_dash_optim import DASHWrapper, on_new_data
    >>> net = torch.nn.Linear(3, 2)
    >>> opt = DASHWrapper(torch.optim.SGD(net.parameters(), lr=0.1), model=net,
    ...                   loss_fn=torch.nn.CrossEntropyLoss())
    >>> report = on_new_data(opt, [(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]))])
    >>> report.call, opt.num_dash_calls
    (1, 1)
    """
    return find_dash(optimizer).on_new_data(
        loader,
        loss_fn=loss_fn,
        batch_loss=batch_loss,
        tol=tol,
        include=include,
        exclude=exclude,
        dry_run=dry_run,
    )


def _check_not_nested(optimizer: Any) -> None:
    """Refuse an optimizer that already holds a DASHWrapper, at any depth."""
    if any(isinstance(o, DASHWrapper) for o in optimizer_chain(optimizer)):
        raise TypeError(
            "the optimizer is already wrapped in a DASHWrapper; wrap the base optimizer once "
            "(a DASHWrapper around a DASHWrapper would shrink twice per call and save one set of settings)"
        )


def _check_not_perturbed(optimizer: Any) -> None:
    """Refuse on_new_data while a SAM's weights are perturbed (between first_step and second_step)."""
    for inner in optimizer_chain(optimizer):
        window = getattr(type(inner), "in_perturbed_window", None)
        if window is not None and window(inner):
            raise RuntimeError(
                "on_new_data was called between SAM.first_step and SAM.second_step, while the weights are "
                "perturbed (second_step would put back the unshrunk weights); call it after second_step"
            )


def _restore_eval_mode(optimizers: list[Any], saved: list[tuple[Tensor, Tensor]]) -> None:
    """Put back the parameters (the averaged points) and the eval flags of schedule-free optimizers."""
    with deferred_interrupts(), torch.no_grad():
        for p, copy in saved:
            p.copy_(copy)
        for o in optimizers:
            set_eval_flag(o)


def _reentry(what: str, busy: str) -> str:
    return (
        f"{what} was called during {busy}'s gradient pass (from the loss, the model's forward or a hook); "
        f"the pass must not step or shrink the model. Call {what} after on_new_data returns"
    )


def _device_of(targets: list[Target], param_groups: list[dict[str, Any]]) -> torch.device:
    for t in targets:
        return t.param.device
    for group in param_groups:
        for p in group["params"]:
            return p.device
    return torch.device("cpu")


def _names_params(groups: list[Any]) -> bool:
    """Whether saved param groups name their parameters (torch.distributed.checkpoint) rather than number them."""
    params = [p for g in groups if isinstance(g, dict) for p in g.get("params", ())]
    return bool(params) and all(isinstance(p, str) for p in params)


def _units(target: Target, factors: Tensor) -> int:
    """How many units the factors stand for (fewer than their elements for a tensor cut into blocks)."""
    return target.per_unit(factors).numel()


def _cuda_devices(params: Sequence[Tensor]) -> list[int]:
    """The CUDA devices of ``params`` (whose random state a dry run puts back)."""
    found = {p.device.index for p in params if p.device.type == "cuda"}
    return sorted(torch.cuda.current_device() if i is None else i for i in found)
