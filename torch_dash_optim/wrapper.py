"""``DASHWrapper``: DASH as a drop-in wrapper for any ``torch.optim`` optimizer."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from . import functional as F
from ._checks import check_alpha, check_choice, check_lambd
from ._delegate import DelegatingOptimizer
from ._interrupts import deferred_interrupts
from .distributed import check_model, dash_factors, is_dtensor, local_tensor
from .gather import gather_direction
from .report import DASHReport, ParamReport
from .selection import Target, check_group, select
from .skip import check_tol, trim_loader
from .state_policy import STATE_POLICIES, plan_state

__all__ = ["AVERAGES", "DASHConfig", "DASHWrapper", "MODES"]

#: The accepted values of ``average=``.
AVERAGES: tuple[str, ...] = ("ema", "mean")
#: The accepted values of ``mode=``.
MODES: tuple[str, ...] = ("eval", "train")

Criterion = Callable[[Any, Any], Tensor]
BatchLoss = Callable[[Any, Any], Tensor]


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
        parameters by shape (see :mod:`torch_dash_optim.selection`) and needs ``batch_loss``.
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
        with ``len()``. See :mod:`torch_dash_optim.skip`.
    autocast_dtype:
        Run the forward pass of the gradient pass under :class:`torch.autocast` with this dtype
        (an enclosing autocast is honoured anyway). Factors are computed in float32.
    sync:
        All-reduce the gathered direction once across ranks. ``None`` (default) does so
        whenever a process group with more than one rank is initialised.

    Notes
    -----
    Param groups may override ``lambd`` and ``granularity`` with keys of those names, and opt
    out with ``"dash": False``.

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
    ) -> None:
        self._init_delegate(optimizer)
        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module or None; got {type(model).__name__}")
        check_model(model)
        _check_losses(loss_fn, batch_loss)
        if autocast_dtype is not None and not isinstance(autocast_dtype, torch.dtype):
            raise TypeError(f"autocast_dtype must be a torch.dtype such as torch.bfloat16; got {autocast_dtype!r}")
        if sync is not None and not isinstance(sync, bool):
            raise TypeError(f"sync must be True, False or None; got {sync!r}")
        self.config = DASHConfig(lambd, alpha, granularity, average, state, mode, tol)
        self.model = model
        self.loss_fn = loss_fn
        self.batch_loss = batch_loss
        self.autocast_dtype = autocast_dtype
        self.sync = sync
        self._calls = 0
        self._select()  # fail early on a model that does not own the optimizer's parameters

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

    @property
    def num_dash_calls(self) -> int:
        """How many times :meth:`on_new_data` has shrunk the model (saved in ``state_dict``)."""
        return self._calls

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Take a step of the wrapped optimizer and return what it returns (the closure's loss)."""
        if closure is None:
            return self._inner.step()
        return self._inner.step(closure)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group (its ``dash``/``lambd``/``granularity`` keys are checked)."""
        check_group(param_group, len(self.param_groups))
        self._inner.add_param_group(param_group)

    def _state_dict_body(self) -> dict[str, Any]:
        state_dict = dict(self._inner.state_dict())
        state_dict["dash"] = {"config": asdict(self.config), "calls": self._calls}
        return state_dict

    def _load_state_dict_body(self, state_dict: dict[str, Any]) -> None:
        dash = state_dict.pop("dash", None)  # absent in a bare optimizer's state_dict: keep ours
        config, calls = self.config, self._calls
        if dash is not None:
            try:
                config, calls = DASHConfig(**dash["config"]), int(dash["calls"])
            except (KeyError, TypeError) as err:
                raise ValueError(f"the 'dash' entry of this state_dict is malformed: {err}") from None
        self._inner.load_state_dict(state_dict)
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

        Returns
        -------
        DASHReport
            Per-parameter factor statistics, skipped parameters and the call count.

        Raises
        ------
        ValueError, TypeError
            For an empty loader, a missing loss, or a batch or loss it cannot use.
        NonFiniteGradientError
            If the gathered gradient is inf or NaN.

        Notes
        -----
        On any failure (including :class:`KeyboardInterrupt`) the weights, gradients,
        buffers, module modes and optimizer state are left exactly as they were.
        """
        if not isinstance(loader, Iterable):
            raise TypeError(f"loader must be an iterable of batches; got {type(loader).__name__}")
        compute_loss = self._loss_for(loss_fn, batch_loss)
        tol = self.config.tol if tol is None else check_tol(tol, self.config.average)
        try:
            return self._shrink(loader, compute_loss, tol)
        except BaseException as err:
            if hasattr(err, "add_note"):
                err.add_note(
                    "DASHWrapper.on_new_data failed; weights, grads, buffers, modes and "
                    "optimizer state were left as they were"
                )
            raise

    def _select(self) -> Any:
        return select(self.param_groups, self.model, lambd=self.config.lambd, granularity=self.config.granularity)

    def _shrink(self, loader: Iterable[Any], compute_loss: Callable[[Any], Tensor], tol: float) -> DASHReport:
        cfg = self.config
        selection = self._select()
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
            shrunk = list(zip([t for t, _ in shrunk], _factors(shrunk), strict=True))
        num_batches = result.num_batches
        del result  # frees the gathered directions before the shrink
        plan = plan_state(cfg.state, self._inner, [(t.name, t.param, f) for t, f in shrunk])
        report = DASHReport(
            self._calls + 1,
            num_batches,
            _param_reports(shrunk),
            skipped,
            plan.unknown,
            skipped_batches=skipped_batches,
            factors={t.name: f for t, f in shrunk},
        )
        # Everything is computed; now change the model and state in one uninterruptible step.
        with deferred_interrupts():
            F.shrink_(
                [local_tensor(t) for t in [t.param for t, _ in shrunk] + plan.tensors],
                [f for _, f in shrunk] + plan.factors,
            )
            plan.apply_drops()
            self._calls += 1
        return report

    def _loss_for(self, loss_fn: Criterion | None, batch_loss: BatchLoss | None) -> Callable[[Any], Tensor]:
        _check_losses(loss_fn, batch_loss)
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


def _check_losses(loss_fn: Any, batch_loss: Any) -> None:
    if loss_fn is not None and batch_loss is not None:
        raise ValueError("give loss_fn (criterion(outputs, targets)) or batch_loss (fn(model, batch)), not both")
    for name, fn in (("loss_fn", loss_fn), ("batch_loss", batch_loss)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be callable; got {type(fn).__name__}")


def _device_of(targets: list[Target], param_groups: list[dict[str, Any]]) -> torch.device:
    for t in targets:
        return t.param.device
    for group in param_groups:
        for p in group["params"]:
            return p.device
    return torch.device("cpu")


def _factors(pairs: list[tuple[Target, Tensor]]) -> list[Tensor]:
    """Factors of every (target, direction): plain tensors in one grouped call, DTensor shards one by one."""
    out: list[Tensor | None] = [None] * len(pairs)
    plain = [i for i, (t, _) in enumerate(pairs) if not is_dtensor(t.param)]
    grouped = F.dash_factors_many(
        [pairs[i][0].param for i in plain],
        [pairs[i][1] for i in plain],
        [pairs[i][0].dims for i in plain],
        [pairs[i][0].lambd for i in plain],
    )
    for i, f in zip(plain, grouped, strict=True):
        out[i] = f
    for i, (t, d) in enumerate(pairs):
        if out[i] is None:
            out[i] = dash_factors(t.param, d, t.dims, t.lambd)
    return out  # type: ignore[return-value]


def _param_reports(shrunk: list[tuple[Target, Tensor]]) -> list[ParamReport]:
    if not shrunk:
        return []
    device = shrunk[0][1].device
    stats = torch.stack(
        [
            torch.stack([f.min(), f.mean(), f.max(), (f <= t.lambd).float().mean()]).to(device)
            for t, f in shrunk
        ]
    ).tolist()  # one host sync for the whole report
    return [
        ParamReport(t.name, tuple(t.param.shape), f.numel(), t.lambd, *row)
        for (t, f), row in zip(shrunk, stats)
    ]
