"""DASH in PyTorch Lightning: a callback that shrinks when the training data grows.

Needs the ``lightning`` extra (``pip install -e ".[lightning]"`` in a clone).

Return a :class:`~torch_dash_optim.DASHWrapper` from ``configure_optimizers`` and add
:class:`DASHCallback` to the trainer:

.. code-block:: python

   class Model(L.LightningModule):
       def configure_optimizers(self):
           return DASHWrapper(torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9),
                              model=self, loss_fn=torch.nn.CrossEntropyLoss())

   trainer = L.Trainer(callbacks=[DASHCallback()], reload_dataloaders_every_n_epochs=1)

A new ``Trainer`` (and a new ``DASHCallback``) for each data stage works too: the size of the
data a module has been trained on is kept on the module itself.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from torch import Tensor

from . import require
from ._data import (
    ConvertedCollate,
    Mapped,
    check_pass_options,
    check_reiterable,
    dataset_size,
    pass_batch_size,
    replay_loader,
    with_pass_transform,
)

_pl = require("lightning.pytorch", "lightning", "torch_dash_optim.integrations.lightning")

from .._checks import check_losses as _check_losses  # noqa: E402
from .._nesting import describe, optimizer_chain  # noqa: E402
from ..report import DASHReport  # noqa: E402
from ..wrapper import DASHWrapper, find_dash  # noqa: E402
from ._figures import (  # noqa: E402
    check_log_factors,
    diagnostics_figures,
    factor_figures,
    plan_diagnostics,
)
from ._guard import guard_others  # noqa: E402
from ._selection import check_patterns, selection_kwargs  # noqa: E402

#: The attribute of the ``LightningModule`` that keeps the size of the training data it has
#: been trained on, so that a new Trainer and a new callback know it.
SEEN_ATTRIBUTE = "_dash_data_seen"

__all__ = ["DASHCallback", "training_step_loss"]


def training_step_loss(pl_module: Any) -> Callable[[Any, Any], Tensor]:
    """A ``batch_loss`` that runs the module's own ``training_step`` and takes its loss.

    ``self.log`` calls made by ``training_step`` during DASH's pass are dropped, so that the
    pass does not enter the epoch's logged metrics. The step must return the loss, or a dict
    with a ``"loss"`` key (automatic optimization).

    Parameters
    ----------
    pl_module:
        The ``LightningModule``.

    Returns
    -------
    callable
        ``fn(model, batch) -> loss``.

    Examples
    --------
    >>> import lightning.pytorch as L
    >>> class Net(L.LightningModule):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = torch.nn.Linear(2, 1)
    ...     def training_step(self, batch, batch_idx):
    ...         loss = self.fc(batch).pow(2).mean()
    ...         self.log("loss", loss)            # dropped during DASH's pass
    ...         return {"loss": loss}
    >>> net = Net()
    >>> training_step_loss(net)(net, torch.zeros(3, 2)).shape
    torch.Size([])
    """

    def batch_loss(model: Any, batch: Any) -> Tensor:
        with _no_logging(pl_module):
            out = pl_module.training_step(batch, 0)
        loss = out.get("loss") if isinstance(out, dict) else out
        if not isinstance(loss, Tensor):
            raise TypeError(
                f"{type(pl_module).__name__}.training_step returned {type(out).__name__}, not a loss tensor or a "
                "dict with 'loss'; pass DASHCallback(loss_fn=...) or batch_loss=..., or give the DASHWrapper a loss"
            )
        return loss

    return batch_loss


@contextlib.contextmanager
def _no_logging(pl_module: Any) -> Iterator[None]:
    had = {name: name in vars(pl_module) for name in ("log", "log_dict")}
    saved = {name: vars(pl_module)[name] for name, present in had.items() if present}
    object.__setattr__(pl_module, "log", lambda *args, **kwargs: None)
    object.__setattr__(pl_module, "log_dict", lambda *args, **kwargs: None)
    try:
        yield
    finally:
        for name, present in had.items():
            if present:
                object.__setattr__(pl_module, name, saved[name])
            else:
                object.__delattr__(pl_module, name)


class DASHCallback(_pl.Callback):
    """Call DASH when the training data grows, inside a Lightning ``Trainer``.

    At the start of every training epoch the callback looks at the size of the training
    dataset. When it has grown since the module last trained (in this ``fit``, an earlier one
    with another ``Trainer``, or the checkpoint it resumed from), it builds a loader over the
    whole dataset with ``shuffle=False`` (the dataset's own order: a dataset that grows by
    appending puts the new data last) and calls :meth:`DASHWrapper.on_new_data
    <torch_dash_optim.DASHWrapper.on_new_data>` on the wrapper among ``trainer.optimizers``,
    under the trainer's precision: ``bf16-mixed`` runs the gradient pass in bfloat16 autocast,
    ``bf16-true``/``16-true``/``64-true`` convert its batches as Lightning converts the
    training batches. The real wrapper is called, so ``num_dash_calls`` and checkpoints are
    right. Call :meth:`request` to trigger it at the next epoch start instead (with your own
    loader if you like).

    **What was seen.** The size of the data seen is kept on the ``LightningModule`` (the
    attribute ``_dash_data_seen``) and in the callback's checkpoint state, so a new ``Trainer``
    with a new callback for each data stage, on the same module, shrinks when the data grew.
    A module restored from a checkpoint without the callback's state, or trained on this data
    before without the callback, cannot be told apart from a fresh one: pass ``seen=``. A
    resumed checkpoint (``ckpt_path``) wins over the module's record, ``seen=`` over both for
    the first epoch.

    **Several training loaders** (a dict or list, combined by Lightning's ``CombinedLoader``):
    growth is watched on the *main* loader, ``main_loader`` (a key or index; default the first
    one), and the pass runs over its dataset only, so it needs a ``loss_fn``/``batch_loss`` (on
    the callback or the wrapper) that takes that loader's batches. Growth of the other loaders
    does not trigger DASH.

    **Manual optimization** needs a ``loss_fn`` or ``batch_loss``: the module's
    ``training_step`` steps its optimizers and cannot be the pass's loss, so the callback refuses
    at the start of ``fit``, before anything changed. During the pass every other optimizer and
    every learning-rate scheduler refuses to step, and the gradients of the parameters the
    wrapper does not hold are put back.

    Lightning re-reads a datamodule's ``train_dataloader`` only at a new ``fit`` or with
    ``Trainer(reload_dataloaders_every_n_epochs=1)``.

    **Logging.** Each call's figures (see ``log_factors`` and ``diagnostics``) go through the
    module's ``log_dict`` with ``on_step=False, on_epoch=True``, the only levels Lightning
    allows in ``on_train_epoch_start``: the logger receives them when the epoch ends, with that
    epoch's other epoch-level metrics. They are also kept in :attr:`metrics`.

    Parameters
    ----------
    loss_fn, batch_loss:
        The loss for the gradient pass (see :class:`~torch_dash_optim.DASHWrapper`). By
        default the wrapper's own; if it has none, the module's ``training_step``
        (:func:`training_step_loss`; automatic optimization and one training loader only).
    batch_size:
        Batch size of the pass. Default ``None``: the training loader's batch size, so the
        EMA runs over mini-batches and, with ``alpha=0.3``, its last ten batches (all new
        data) make up 97 % of the direction. ``"chunk"``: one batch per chunk of new data
        (the batch size is the number of new examples), the authors' setting, in which the
        newest chunk weighs 30 %, the one before 21 % and so on; a :meth:`request` without
        growth then uses the training batch size. An int: that size.
    pass_loader:
        ``pass_loader(dataset) -> batches``: build the pass's loader yourself from the (main)
        training dataset, for example with a sampler of your own (all data, new data last).
        Excludes ``batch_size``, ``num_workers`` and ``collate_fn``.
    pass_transform:
        The transform the pass reads the training dataset with, in place of the dataset's own:
        typically the evaluation transform, so that the pass sees the examples without
        augmentation, as in the authors' code. It replaces the ``transform`` of a
        torchvision-style dataset (also inside a ``ConcatDataset`` or ``Subset``) in a shallow
        copy, or calls ``with_transform`` of a Hugging Face ``datasets.Dataset``; the training
        dataset is not changed. A dataset with neither is refused with a ``TypeError`` when the
        pass is built. Default ``None``: the pass replays the training dataset *with* its
        transforms, random augmentation included. With ``pass_loader``, ``pass_loader``
        receives the copy. Not applied to a loader given to :meth:`request`.
    num_workers:
        Workers of the pass's loader (default 0).
    collate_fn:
        Collate function of the pass's loader (default: the training loader's).
    main_loader:
        With several training loaders, the key (dict) or index (list) of the one whose growth
        triggers DASH and whose dataset the pass runs over. Default: the first.
    seen:
        Size of the training data the module was already trained on, for a module that keeps
        no record of it (see above). Default None: the module's record, else nothing.
    auto:
        Trigger on dataset growth (default). With ``False``, only :meth:`request` triggers.
    include, exclude:
        Glob patterns over the parameters' qualified names (``"*.attn.*"``, ``"lm_head.*"``),
        passed to every call as :meth:`DASHWrapper.on_new_data
        <torch_dash_optim.DASHWrapper.on_new_data>`'s ``include``/``exclude``. Default ``None``:
        the wrapper's own selection.
    log_factors:
        What the callback logs of each call's factors through ``pl_module.log_dict``: ``True``
        (default) the overall ``dash/mean_factor``, ``dash/min_factor`` and ``dash/at_floor`` and
        the same per shrunk parameter (``dash/mean_factor/<param>``, ...); ``"summary"`` the
        overall three only; ``False`` nothing.
    diagnostics:
        Measure the plasticity diagnostics (:func:`torch_dash_optim.diagnostics.diagnose`) over
        the pass's loader and log them: ``True`` before the shrink, one forward pass without
        gradients, logged as ``diag/<key>`` (``diag/dormant/<layer>``, ``diag/feature_rank``,
        ...); or a dict of ``diagnose`` arguments (``tau``, ``layers``, ``max_batches``,
        ``cosines``, ...) with ``"when"``: ``"before"`` (default), ``"after"`` (the shrunk model,
        logged as ``diag_after/<key>``) or ``"both"``. Default ``False``.

    Attributes
    ----------
    reports:
        The :class:`~torch_dash_optim.DASHReport` of every call made by this callback.
    metrics:
        The figures of the last call, by key, as logged (empty before the first call).

    Warns
    -----
    UserWarning
        When growth cannot be seen (the main loader has no map-style dataset with a length),
        when a module trained before comes with no record of the data it saw, or when
        :meth:`run` is called from a hook where Lightning does not allow logging.

    Examples
    --------
    >>> from torch_dash_optim.integrations.lightning import DASHCallback
    >>> callback = DASHCallback(batch_size="chunk")
    >>> callback.state_dict()
    {'seen': None}
    """

    def __init__(
        self,
        *,
        loss_fn: Callable[[Any, Any], Tensor] | None = None,
        batch_loss: Callable[[Any, Any], Tensor] | None = None,
        batch_size: int | str | None = None,
        pass_loader: Callable[[Any], Iterable[Any]] | None = None,
        pass_transform: Callable[..., Any] | None = None,
        num_workers: int = 0,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        main_loader: str | int | None = None,
        seen: int | None = None,
        auto: bool = True,
        include: str | Sequence[str] | None = None,
        exclude: str | Sequence[str] | None = None,
        log_factors: bool | str = True,
        diagnostics: bool | Mapping[str, Any] = False,
    ) -> None:
        _check_losses(loss_fn, batch_loss)
        check_pass_options(batch_size, pass_loader, pass_transform)
        check_patterns(include, exclude, "DASHCallback")
        check_log_factors(log_factors)
        self._diagnostics = plan_diagnostics(diagnostics, "DASHCallback")
        if seen is not None and (not isinstance(seen, int) or isinstance(seen, bool) or seen < 0):
            raise ValueError(f"seen must be a non-negative int (a number of examples) or None; got {seen!r}")
        self.loss_fn = loss_fn
        self.batch_loss = batch_loss
        self.batch_size = batch_size
        self.pass_loader = pass_loader
        self.pass_transform = pass_transform
        self.num_workers = num_workers
        self.collate_fn = collate_fn
        self.main_loader = main_loader
        self.auto = auto
        self.include = include
        self.exclude = exclude
        self.log_factors = log_factors
        self.diagnostics = diagnostics
        self.reports: list[DASHReport] = []
        self.metrics: dict[str, float] = {}
        self._seen: int | None = seen
        self._explicit: int | None = seen
        self._loaded = False
        self._requested: list[Iterable[Any] | None] = []

    # -- triggers ----------------------------------------------------------------------------
    def request(self, loader: Iterable[Any] | None = None) -> None:
        """Call DASH at the start of the next training epoch, over ``loader`` or the training data.

        Parameters
        ----------
        loader:
            The batches of the pass: all data so far, in order, the new data last. ``None``
            (default): the trainer's whole (main) training dataset, in order, ``shuffle=False``.
        """
        self._requested = [loader]

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """Lightning hook: refuse, before any step, a setup the callback cannot serve.

        Also warns when the growth of the training data cannot be seen.

        Parameters
        ----------
        trainer, pl_module:
            The ``Trainer`` and the ``LightningModule``, as Lightning passes them.

        Raises
        ------
        TypeError
            Without exactly one ``DASHWrapper`` among ``trainer.optimizers``.
        ValueError
            Without a loss for the pass where ``training_step`` cannot give one: manual
            optimization, or several training loaders.
        """
        dash = self._find(trainer)
        main, label, _ = self._main(trainer)
        own_loader = bool(self._requested) and self._requested[0] is not None and not self.auto
        if not self._has_loss(dash):
            self._check_training_step(trainer, pl_module, own_loader=own_loader)
        if self.auto and dataset_size(main) is None:
            warnings.warn(
                f"DASHCallback cannot see whether the training data grows: the {label} has no map-style dataset "
                f"with a length (got {type(main).__name__} over {type(getattr(main, 'dataset', None)).__name__}), "
                "so DASH will not run on growth. Call callback.request(loader) when the data grows, or train "
                "from a map-style dataset (one with __len__ and __getitem__)",
                UserWarning,
                stacklevel=2,
            )

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        """Lightning hook: call :meth:`run` if DASH was requested or the training data grew.

        Parameters
        ----------
        trainer, pl_module:
            The ``Trainer`` and the ``LightningModule``, as Lightning passes them.
        """
        main, _, _ = self._main(trainer)
        size = dataset_size(main)
        seen = self._reference(pl_module)
        if self.auto and seen is None and size is not None and not self._requested:
            self._warn_if_trained(trainer, size)
        grown = self.auto and size is not None and seen is not None and size > seen
        if self._requested or grown:
            requested = self._requested[0] if self._requested else None
            self.run(trainer, pl_module, requested, grown_by=size - seen if grown else None)  # type: ignore[operator]
            self._requested = []
        if size is not None:
            self._seen, self._explicit, self._loaded = size, None, False
            setattr(pl_module, SEEN_ATTRIBUTE, size)

    def run(
        self, trainer: Any, pl_module: Any, loader: Iterable[Any] | None = None, *, grown_by: int | None = None
    ) -> DASHReport:
        """Call DASH now, over ``loader`` or over the trainer's whole (main) training dataset.

        Parameters
        ----------
        trainer, pl_module:
            The ``Trainer`` (after its optimizers are set up) and the ``LightningModule``.
        loader:
            The batches of the pass (default: the training dataset, in order, ``shuffle=False``).
        grown_by:
            How many examples are new (the batch size under ``batch_size="chunk"``).

        Returns
        -------
        DASHReport
            What the call did (also appended to :attr:`reports`).

        Raises
        ------
        ValueError
            Without a loss where ``training_step`` cannot give one (see the class notes);
            nothing was changed.
        RuntimeError
            If the loss steps an optimizer or a scheduler; it is refused before the step, and
            weights, gradients and optimizer state are left as they were.

        Notes
        -----
        With ``diagnostics`` measured after the shrink, an error there comes after the shrink:
        the model is shrunk and the report is in :attr:`reports`.
        """
        dash = self._find(trainer)
        loss_fn, batch_loss = self.loss_fn, self.batch_loss
        if not self._has_loss(dash):
            self._check_training_step(trainer, pl_module, own_loader=loader is not None)
            batch_loss = training_step_loss(pl_module)
        plugin = trainer.precision_plugin
        convert = plugin.convert_input if _converts_input(plugin) else None
        plan = self._diagnostics
        if plan is not None and loader is not None:
            check_reiterable(loader, "DASHCallback")
        if loader is None:
            loader = self._pass_data(trainer, grown_by, convert)
        elif convert is not None:
            loader = Mapped(loader, convert)
        schedulers = [config.scheduler for config in getattr(trainer, "lr_scheduler_configs", [])]
        model = dash.model if dash.model is not None else pl_module
        own = loss_fn is not None or batch_loss is not None
        pass_loss = (batch_loss, loss_fn) if own else (dash.batch_loss, dash.loss_fn)

        def measure(prefix: str) -> dict[str, float]:
            assert plan is not None
            with (
                plugin.forward_context(),
                guard_others(dash, trainer.optimizers, schedulers, pl_module, who="DASHCallback"),
            ):
                found = plan.measure(model, loader, *pass_loss, dash.config)
            return diagnostics_figures(found, prefix)

        before = measure("diag") if plan is not None and plan.before else {}
        with (
            plugin.forward_context(),
            guard_others(dash, trainer.optimizers, schedulers, pl_module, who="DASHCallback"),
        ):
            report = dash.on_new_data(
                loader, loss_fn=loss_fn, batch_loss=batch_loss, **selection_kwargs(self.include, self.exclude)
            )
        self.reports.append(report)
        figures = {**factor_figures(report, self.log_factors), **before}
        self.metrics = figures
        if plan is not None and plan.after:
            figures.update(_after_shrink(measure, report))
        self._log(pl_module, figures)
        return report

    def _log(self, pl_module: Any, figures: dict[str, float]) -> None:
        """Log through the module's ``log_dict`` where Lightning allows it; warn where it does not."""
        if not figures:
            return
        try:
            pl_module.log_dict(figures, on_step=False, on_epoch=True, batch_size=1)
        except _pl.utilities.exceptions.MisconfigurationException as err:
            hook = getattr(pl_module, "_current_fx_name", None)
            warnings.warn(
                f"DASHCallback could not log its figures from {hook or 'outside the Trainer'}: {err}. They are "
                "in callback.metrics; call run() from a hook where Lightning allows self.log at epoch level "
                "(on_train_epoch_start, as the callback does), or pass log_factors=False",
                UserWarning,
                stacklevel=3,
            )

    # -- helpers -----------------------------------------------------------------------------
    def _has_loss(self, dash: DASHWrapper) -> bool:
        return any(f is not None for f in (self.loss_fn, self.batch_loss, dash.loss_fn, dash.batch_loss))

    def _check_training_step(self, trainer: Any, pl_module: Any, *, own_loader: bool) -> None:
        """Refuse ``training_step`` as the pass's loss where it cannot be one (nothing changed yet)."""
        if not getattr(pl_module, "automatic_optimization", True):
            raise ValueError(
                f"DASHCallback: {type(pl_module).__name__} uses manual optimization, so its training_step steps "
                "the optimizers and cannot be the loss of DASH's gradient pass (which must never step an "
                "optimizer); nothing was changed. Pass DASHCallback(batch_loss=fn), fn(model, batch) -> loss "
                "computed without optimizer steps or backward, or give the DASHWrapper a loss_fn/batch_loss"
            )
        _, label, count = self._main(trainer)
        if count > 1 and not own_loader:
            raise ValueError(
                f"DASHCallback: the training data is {count} loaders and the gradient pass runs over the main "
                f"one ({label}) only, but training_step expects the combined batches; nothing was changed. "
                "Pass DASHCallback(batch_loss=fn), fn(model, batch) -> loss for the main loader's batches, or "
                "give the DASHWrapper a loss (main_loader=... picks the main loader)"
            )

    def _main(self, trainer: Any) -> tuple[Any, str, int]:
        """The main training loader, a label for messages, and how many training loaders there are."""
        loaders = trainer.train_dataloader
        key = self.main_loader
        if isinstance(loaders, Mapping):
            keys = list(loaders)
            key = keys[0] if key is None and keys else key
            if key not in loaders:
                raise ValueError(f"DASHCallback(main_loader={key!r}) is not a key of the training loaders: {keys}")
            return loaders[key], f"training loader {key!r}", len(keys)
        if isinstance(loaders, (list, tuple)):
            key = 0 if key is None else key
            if not isinstance(key, int) or not -len(loaders) <= key < len(loaders):
                raise ValueError(
                    f"DASHCallback(main_loader={key!r}) is not an index of the {len(loaders)} training loaders"
                )
            return loaders[key], f"training loader {key}", len(loaders)
        if key is not None:
            raise ValueError(
                f"DASHCallback(main_loader={key!r}) needs several training loaders (a dict or list); the "
                f"training data is one {type(loaders).__name__}: leave main_loader=None"
            )
        return loaders, "training loader", 1

    def _pass_data(self, trainer: Any, grown_by: int | None, convert: Callable[[Any], Any] | None) -> Iterable[Any]:
        main, label, _ = self._main(trainer)
        dataset = getattr(main, "dataset", None)
        if self.pass_transform is not None:
            if dataset is None or dataset_size(main) is None:
                raise TypeError(
                    f"DASHCallback(pass_transform=...) needs the {label} to have a map-style dataset with a "
                    f"length (got {type(main).__name__}); pass pass_loader=fn or call callback.request(loader)"
                )
            dataset = with_pass_transform(dataset, self.pass_transform, who="DASHCallback")
        if self.pass_loader is not None:
            data = self.pass_loader(dataset)
            if self._diagnostics is not None:
                check_reiterable(data, "DASHCallback")
            return Mapped(data, convert) if convert is not None else data
        collate = self.collate_fn if self.collate_fn is not None else getattr(main, "collate_fn", None)
        if convert is not None:
            collate = ConvertedCollate(collate, convert)
        size = pass_batch_size(self.batch_size, grown_by, getattr(main, "batch_size", None))
        return replay_loader(
            main,
            batch_size=size,
            num_workers=self.num_workers,
            collate_fn=collate,
            who=f"DASHCallback ({label})",
            dataset=dataset,
        )

    def _reference(self, pl_module: Any) -> int | None:
        """The data size to compare with: checkpoint, then ``seen=``, then the module's record."""
        if self._loaded:
            return self._seen
        if self._explicit is not None:
            return self._explicit
        recorded = getattr(pl_module, SEEN_ATTRIBUTE, None)
        return recorded if isinstance(recorded, int) else self._seen

    def _warn_if_trained(self, trainer: Any, size: int) -> None:
        calls = self._find(trainer).num_dash_calls
        if trainer.global_step > 0 or calls > 0:
            warnings.warn(
                f"DASHCallback cannot tell whether the training data grew: the module was trained before "
                f"(global_step={trainer.global_step}, num_dash_calls={calls}) but neither the checkpoint nor the "
                f"module records the data size it saw; taking the {size} examples now as seen, DASH does not run. "
                "If the data grew, pass DASHCallback(seen=<size trained on>) or call callback.request()",
                UserWarning,
                stacklevel=2,
            )

    @staticmethod
    def _find(trainer: Any) -> DASHWrapper:
        found = []
        for opt in trainer.optimizers:
            try:
                found.append(find_dash(opt))
            except TypeError:
                continue
        if len(found) != 1:
            chains = "; ".join(describe(optimizer_chain(o)) for o in trainer.optimizers) or "no optimizers"
            raise TypeError(
                f"DASHCallback needs exactly one DASHWrapper among trainer.optimizers, found {len(found)} in: "
                f"{chains}. Return DASHWrapper(optimizer, model=self, ...) from configure_optimizers"
            )
        return found[0]

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The callback's state, saved by Lightning in its checkpoints.

        Returns
        -------
        dict of str to Any
            ``{"seen": size}``: the training dataset's size at the last epoch start seen (or
            ``seen=``), ``None`` before the first.
        """
        return {"seen": self._seen}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the state saved by :meth:`state_dict` (Lightning calls it on resume).

        Parameters
        ----------
        state_dict:
            A dict made by :meth:`state_dict`; the next epoch start compares the dataset's
            size with the saved one (over the module's own record).
        """
        self._seen = state_dict.get("seen")
        self._loaded = True


def _converts_input(plugin: Any) -> bool:
    """Whether the precision plugin changes the batches (``*-true`` precisions convert their dtype)."""
    base = getattr(_pl.plugins.precision, "Precision", None)
    return base is None or type(plugin).convert_input is not base.convert_input


def _after_shrink(measure: Callable[[str], dict[str, float]], report: DASHReport) -> dict[str, float]:
    """The diagnostics after the shrink; an error there says that the shrink was made."""
    try:
        return measure("diag_after")
    except Exception as err:
        if hasattr(err, "add_note"):
            err.add_note(
                f"DASHCallback: the diagnostics after the shrink failed; DASH's call {report.call} had already "
                "shrunk the model (its report is in callback.reports)"
            )
        raise
