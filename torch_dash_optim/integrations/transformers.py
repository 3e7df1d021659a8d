"""DASH in the Hugging Face ``Trainer``: a ``TrainerCallback`` that shrinks when the data grows.

Needs the ``hf`` extra (``pip install -e ".[hf]"`` in a clone: transformers and accelerate).

Hand the Trainer a :class:`~torch_dash_optim.DASHWrapper` and add :class:`DASHCallback`:

.. code-block:: python

   opt = DASHWrapper(torch.optim.AdamW(model.parameters(), lr=5e-5), model=model,
                     batch_loss=model_loss)
   trainer = Trainer(model=model, args=args, train_dataset=data, optimizers=(opt, None),
                     callbacks=[DASHCallback()])
   trainer.train()
   trainer.train_dataset = grown_data      # old examples first, new ones last
   trainer.train()                         # the callback shrinks before the first step
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from . import require
from ._data import (
    check_pass_options,
    check_reiterable,
    dataset_size,
    pass_batch_size,
    replay_loader,
    with_pass_transform,
)

_tf = require("transformers", "hf", "torch_dash_optim.integrations.transformers")

from .._checks import check_losses as _check_losses  # noqa: E402
from ..report import DASHReport  # noqa: E402
from ..wrapper import find_dash  # noqa: E402
from ._figures import (  # noqa: E402
    check_log_factors,
    diagnostics_figures,
    factor_figures,
    plan_diagnostics,
)
from ._selection import check_patterns, selection_kwargs  # noqa: E402

#: The model attribute that keeps the size of the training data it has been trained on.
SEEN_ATTRIBUTE = "_dash_data_seen"

__all__ = ["DASHCallback", "model_loss"]

_ExportableState: type = getattr(_tf.trainer_callback, "ExportableState", object)


def model_loss(model: Any, batch: Any) -> Tensor:
    """``batch_loss`` for Hugging Face models: the loss the model computes itself.

    Calls ``model(**batch)`` on a dict batch (``model(*batch)`` on a tuple) and returns its
    ``loss``. The batch must hold the labels (``labels``, or what the model's loss needs).

    Parameters
    ----------
    model:
        The model; it returns a dict or a ``ModelOutput`` with ``loss``, or a tuple whose
        first element is the scalar loss.
    batch:
        A dict of keyword arguments of ``model``, or a tuple of positional ones.

    Returns
    -------
    Tensor
        The scalar loss the model computed.

    Raises
    ------
    ValueError
        If the model returns no loss (the batch lacks the labels); the message names the
        batch's keys.

    Examples
    --------
    >>> from torch_dash_optim.integrations.transformers import model_loss
    >>> class Toy(torch.nn.Module):
    ...     def forward(self, x, labels):
    ...         return {"loss": (x - labels).pow(2).mean()}
    >>> model_loss(Toy(), {"x": torch.ones(2), "labels": torch.zeros(2)})
    tensor(1.)
    """
    out = model(**batch) if isinstance(batch, Mapping) else model(*batch)
    loss = out.get("loss") if isinstance(out, Mapping) else getattr(out, "loss", None)
    if loss is None and isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor) and out[0].ndim == 0:
        loss = out[0]
    if not isinstance(loss, Tensor):
        keys = sorted(batch) if isinstance(batch, Mapping) else f"a {type(batch).__name__}"
        raise ValueError(
            f"the model returned no loss for a batch with {keys}; the batches must hold the labels (e.g. "
            "'labels'), or pass batch_loss=fn (called as fn(model, batch) -> loss)"
        )
    return loss


class _Exports(threading.local):
    last: Any = None  # weakref to the callback whose state() ran last in this thread


_exports = _Exports()


class DASHCallback(_tf.TrainerCallback, _ExportableState):  # type: ignore[misc]
    """Call DASH in a Hugging Face ``Trainer`` when its training data has grown.

    At ``on_train_begin`` (every ``trainer.train()``), the callback compares the size of the
    training dataset with the size the model was last trained on. If it has grown, it builds a
    loader over the whole dataset with ``shuffle=False`` and the Trainer's collator, and calls
    :meth:`DASHWrapper.on_new_data <torch_dash_optim.DASHWrapper.on_new_data>` through the
    ``AcceleratedOptimizer`` the Trainer hands to callbacks, under ``bf16``/``fp16`` autocast if
    the training arguments ask for it. Dict batches go through :func:`model_loss` (the model's
    own loss) unless the wrapper or the callback has a loss.

    **What was seen.** The size seen is kept on the model (the attribute ``_dash_data_seen``),
    so a new ``Trainer`` and a new callback for each data stage, on the same model, shrink
    when the data grew; and in the callback's state, so that with
    ``TrainingArguments(restore_callback_states_from_checkpoint=True)`` a resumed run knows it.
    The Trainer then rebuilds the callback from that state; the rebuild is the callback you
    gave, with its ``loss_fn``/``batch_loss``, ``batch_size`` and ``pass_loader`` kept and
    ``seen`` taken from the checkpoint (use one ``DASHCallback`` per Trainer). A run resumed
    without the callback's state warns that it cannot tell whether the data grew: pass
    ``seen=``. Call :meth:`request` to shrink at the next ``train()`` whatever the size.

    **Logging.** The figures of each call (see ``log_factors`` and ``diagnostics``) go through
    the Trainer's own ``log()``, right after the shrink, at the current ``global_step``: they
    enter ``trainer.state.log_history`` and reach every ``report_to`` backend (TensorBoard,
    W&B, ...), and the console printer. The Trainer hands its callbacks no reference to
    itself; the callback finds the Trainer whose callbacks it is among on the call stack
    (``on_train_begin`` is called from the Trainer's own method). Where there is none (a
    callback event sent by hand), pass ``trainer=`` to :meth:`run`; otherwise it warns, and
    the figures stay in :attr:`metrics`.

    Parameters
    ----------
    loss_fn, batch_loss:
        The loss for the gradient pass (see :class:`~torch_dash_optim.DASHWrapper`). Default:
        the wrapper's own, else :func:`model_loss`.
    batch_size:
        Batch size of the pass. Default ``None``: ``per_device_train_batch_size``, so the EMA
        runs over training-sized batches and, with ``alpha=0.3``, its last ten batches (all
        new data) make up 97 % of the direction. ``"chunk"``: one batch per chunk of new data
        (the batch size is the number of new examples), the authors' setting; a
        :meth:`request` without growth then uses ``per_device_train_batch_size``. An int: that
        size.
    pass_loader:
        ``pass_loader(dataset) -> batches``: build the pass's loader yourself from the training
        dataset (all data, new data last). Excludes ``batch_size``.
    pass_transform:
        The transform the pass reads the training dataset with, in place of its own: typically
        the evaluation transform, so that the pass sees the examples without augmentation, as
        in the authors' code. A Hugging Face ``datasets.Dataset`` gets
        ``dataset.with_transform(pass_transform)`` (a transform of batches, as for
        ``set_transform``); a torchvision-style dataset (also inside a ``ConcatDataset`` or
        ``Subset``) a shallow copy with its ``transform`` replaced. The training dataset is not
        changed. A dataset with neither is refused with a ``TypeError`` when the pass is built.
        Default ``None``: the pass replays the training dataset *with* its transforms, random
        augmentation included. With ``pass_loader``, ``pass_loader`` receives the copy.
    seen:
        Dataset size already trained on, for a model that keeps no record of it. Default None:
        the model's record, else the first ``train()`` only records the size.
    include, exclude:
        Glob patterns over the parameters' qualified names (``"*.attn.*"``, ``"lm_head.*"``),
        passed to every call as :meth:`DASHWrapper.on_new_data
        <torch_dash_optim.DASHWrapper.on_new_data>`'s ``include``/``exclude``. Default ``None``:
        the wrapper's own selection.
    log_factors:
        What the callback logs of each call's factors: ``True`` (default) the overall
        ``dash/mean_factor``, ``dash/min_factor`` and ``dash/at_floor`` and the same per shrunk
        parameter (``dash/mean_factor/<param>``, ...); ``"summary"`` the overall three only;
        ``False`` nothing.
    diagnostics:
        Measure the plasticity diagnostics (:func:`torch_dash_optim.diagnostics.diagnose`) over
        the pass's loader and log them: ``True`` before the shrink, one forward pass without
        gradients, logged as ``diag/<key>`` (``diag/dormant/<layer>``, ``diag/feature_rank``,
        ...); or a dict of ``diagnose`` arguments (``tau``, ``layers``, ``max_batches``,
        ``cosines``, ...) with ``"when"``: ``"before"`` (default), ``"after"`` (logged as
        ``diag_after/<key>``) or ``"both"``. Default ``False``.
    has_loss, unsaved, restored:
        Set by the Trainer's rebuild from a checkpoint (through :meth:`state`): whether the
        saved callback had a loss of its own, the names of its other settings a checkpoint
        cannot hold (``pass_loader``, ``pass_transform``), and that this is a rebuild. Leave
        them.

    Attributes
    ----------
    reports:
        The :class:`~torch_dash_optim.DASHReport` of every call made by this callback.
    metrics:
        The figures of the last call, by key, as logged (empty before the first call).

    Warns
    -----
    UserWarning
        When growth cannot be seen (a dataset without a length), when a model trained before
        comes with no record of the data it saw, or when the figures cannot be logged (no
        Trainer found).

    Examples
    --------
    >>> from torch_dash_optim.integrations.transformers import DASHCallback
    >>> DASHCallback(seen=1000, exclude=["lm_head.*"]).state()["args"]["exclude"]
    ['lm_head.*']
    """

    def __new__(cls, *args: Any, restored: bool = False, **kwargs: Any) -> DASHCallback:
        # The Trainer rebuilds stateful callbacks as type(callback)(**state["args"]) right after
        # asking them for state(): hand it back the callback the user made, loss and all.
        if restored:
            original = _exports.last() if _exports.last is not None else None
            if type(original) is cls and not getattr(original, "_adopting", False):
                original._adopting = True
                return original  # type: ignore[no-any-return]
        return super().__new__(cls)

    def __init__(
        self,
        *,
        loss_fn: Callable[[Any, Any], Tensor] | None = None,
        batch_loss: Callable[[Any, Any], Tensor] | None = None,
        batch_size: int | str | None = None,
        pass_loader: Callable[[Any], Iterable[Any]] | None = None,
        pass_transform: Callable[..., Any] | None = None,
        seen: int | None = None,
        include: str | Sequence[str] | None = None,
        exclude: str | Sequence[str] | None = None,
        log_factors: bool | str = True,
        diagnostics: bool | Mapping[str, Any] = False,
        has_loss: bool = False,
        unsaved: Sequence[str] = (),
        restored: bool = False,
    ) -> None:
        if getattr(self, "_adopting", False):  # the user's callback, rebuilt from a checkpoint
            self._adopting = False
            self.seen, self._loaded = seen, True
            return
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
        self.include = include
        self.exclude = exclude
        self.log_factors = log_factors
        self.diagnostics = diagnostics
        self.seen = seen
        self.reports: list[DASHReport] = []
        self.metrics: dict[str, float] = {}
        self._explicit = None if restored else seen
        self._loaded = restored
        self._lost = ([_LOSS] if restored and has_loss else []) + (list(unsaved) if restored else [])
        self._requested: list[Iterable[Any] | None] = []

    def request(self, loader: Iterable[Any] | None = None) -> None:
        """Call DASH at the next ``on_train_begin``, over ``loader`` or the training data.

        Parameters
        ----------
        loader:
            The batches of the pass: all data so far, in order, the new data last. ``None``
            (default): the Trainer's whole training dataset, in order, ``shuffle=False``.
        """
        self._requested = [loader]

    def state(self) -> dict[str, Any]:
        """The callback's state, saved in the Trainer's checkpoints.

        Returns
        -------
        dict of str to Any
            ``{"args": {"batch_size": ..., "seen": ..., "include": ..., "exclude": ...,
            "log_factors": ..., "diagnostics": ..., "has_loss": ..., "unsaved": [...],
            "restored": True}, "attributes": {}}``, the form the Trainer uses to rebuild the
            callback on resume (JSON, as the Trainer saves it). The loss, ``pass_loader`` and
            ``pass_transform`` cannot be saved: the rebuild takes them from this callback, and
            a rebuild that cannot find it refuses to run without them.
        """
        _exports.last = weakref.ref(self)
        batch_size = self.batch_size if self.batch_size is None or isinstance(self.batch_size, (int, str)) else None
        has_loss = self.loss_fn is not None or self.batch_loss is not None
        unsaved = [name for name in ("pass_loader", "pass_transform") if getattr(self, name) is not None]
        diagnostics = _as_json(self.diagnostics)
        if diagnostics is None:
            unsaved.append("diagnostics")
        return {
            "args": {
                "batch_size": batch_size,
                "seen": self.seen,
                "include": _as_json(self.include),
                "exclude": _as_json(self.exclude),
                "log_factors": self.log_factors,
                "diagnostics": diagnostics if diagnostics is not None else False,
                "has_loss": has_loss,
                "unsaved": unsaved,
                "restored": True,
            },
            "attributes": {},
        }

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Trainer event: call :meth:`run` if DASH was requested or the training data grew.

        Parameters
        ----------
        args, state, control:
            The ``TrainingArguments``, ``TrainerState`` and ``TrainerControl``, as the
            Trainer passes them.
        **kwargs:
            The Trainer's other objects; ``model``, ``optimizer`` and ``train_dataloader`` are
            used.
        """
        if self._lost:
            raise ValueError(
                "DASHCallback was rebuilt by the Trainer from the checkpoint (restore_callback_states_from_checkpoint"
                f"=True) without the {' and '.join(self._lost)} given to the original callback, which it could not "
                "find; nothing was changed. Pass the callback to Trainer(callbacks=[...]) and use one DASHCallback "
                "per Trainer"
            )
        loader = kwargs.get("train_dataloader")
        model = kwargs.get("model")
        size = dataset_size(loader)
        seen = self._reference(model)
        if size is None and not self._requested:
            warnings.warn(
                "DASHCallback cannot see whether the training data grows: the training dataset has no length "
                f"(got {type(getattr(loader, 'dataset', None)).__name__}), so DASH will not run on growth. Call "
                "callback.request(loader) before trainer.train() when the data grows, or use a map-style dataset",
                UserWarning,
                stacklevel=2,
            )
        if seen is None and size is not None and not self._requested:
            calls = find_dash(kwargs["optimizer"]).num_dash_calls
            if state.global_step > 0 or calls > 0:
                warnings.warn(
                    f"DASHCallback cannot tell whether the training data grew: the model was trained before "
                    f"(global_step={state.global_step}, num_dash_calls={calls}) but neither the callback's state nor "
                    f"the model records the data size it saw; taking the {size} examples now as seen, DASH does not "
                    "run. Pass DASHCallback(seen=<size trained on>), or resume with TrainingArguments("
                    "restore_callback_states_from_checkpoint=True)",
                    UserWarning,
                    stacklevel=2,
                )
        grown = size is not None and seen is not None and size > seen
        if self._requested or grown:
            requested = self._requested[0] if self._requested else None
            self.run(
                args,
                kwargs["optimizer"],
                loader,
                requested,
                grown_by=size - seen if grown else None,  # type: ignore[operator]
                model=model,
            )
            self._requested = []
        if size is not None:
            self.seen, self._explicit, self._loaded = size, None, False
            if model is not None:
                setattr(model, SEEN_ATTRIBUTE, size)

    def _reference(self, model: Any) -> int | None:
        """The size to compare with: checkpoint, then ``seen=``, then the model's record, then our own."""
        if self._loaded or self._explicit is not None:
            return self.seen
        recorded = getattr(model, SEEN_ATTRIBUTE, None)
        return recorded if isinstance(recorded, int) else self.seen

    def run(
        self,
        args: Any,
        optimizer: Any,
        train_loader: Any,
        loader: Iterable[Any] | None = None,
        *,
        grown_by: int | None = None,
        model: Any = None,
        trainer: Any = None,
    ) -> DASHReport:
        """Call DASH now, over ``loader`` or over the whole dataset of ``train_loader``, and log its figures.

        Parameters
        ----------
        args:
            The ``TrainingArguments`` (batch size, ``bf16``/``fp16``).
        optimizer:
            The optimizer the Trainer uses (an ``AcceleratedOptimizer`` around the wrapper).
        train_loader:
            The Trainer's training loader (its dataset and collator are reused).
        loader:
            The batches of the pass (default: ``train_loader``'s dataset in order).
        grown_by:
            How many examples are new (the batch size under ``batch_size="chunk"``).
        model:
            The model the diagnostics measure when the wrapper has none (the Trainer's model).
        trainer:
            The ``Trainer`` to log through; default: the one found on the call stack.

        Returns
        -------
        DASHReport
            What the call did (also appended to :attr:`reports`).

        Notes
        -----
        With ``diagnostics`` measured after the shrink, an error there comes after the shrink:
        the model is shrunk and the report is in :attr:`reports`.
        """
        dash = find_dash(optimizer)
        if trainer is None and (self.log_factors is not False or self._diagnostics is not None):
            trainer = _calling_trainer(self)
        if loader is None:
            dataset = getattr(train_loader, "dataset", None)
            if self.pass_transform is not None:
                if dataset is None or dataset_size(train_loader) is None:
                    raise TypeError(
                        "DASHCallback(pass_transform=...) needs a training dataset with a length (got "
                        f"{type(dataset).__name__}); pass pass_loader=fn or call callback.request(loader)"
                    )
                dataset = with_pass_transform(dataset, self.pass_transform, who="DASHCallback")
            if self.pass_loader is not None:
                loader = self.pass_loader(dataset)
            else:
                loader = replay_loader(
                    train_loader,
                    batch_size=pass_batch_size(self.batch_size, grown_by, args.per_device_train_batch_size),
                    who="DASHCallback",
                    dataset=dataset,
                )
        loss_fn, batch_loss = self.loss_fn, self.batch_loss
        if loss_fn is None and batch_loss is None and dash.loss_fn is None and dash.batch_loss is None:
            batch_loss = model_loss
        own = loss_fn is not None or batch_loss is not None
        pass_loss = (batch_loss, loss_fn) if own else (dash.batch_loss, dash.loss_fn)
        plan = self._diagnostics
        target = dash.model if dash.model is not None else model
        if plan is not None:
            check_reiterable(loader, "DASHCallback")
            if target is None:
                raise ValueError(
                    "DASHCallback(diagnostics=...) needs the model: the DASHWrapper has none (model=None) and none "
                    "was given; give the wrapper model=... or pass run(..., model=model)"
                )
        before: dict[str, float] = {}
        if plan is not None and plan.before:
            with _autocast(args, dash):
                before = diagnostics_figures(plan.measure(target, loader, *pass_loss, dash.config), "diag")
        with _autocast(args, dash):
            report = dash.on_new_data(
                loader, loss_fn=loss_fn, batch_loss=batch_loss, **selection_kwargs(self.include, self.exclude)
            )
        self.reports.append(report)
        figures = {**factor_figures(report, self.log_factors), **before}
        self.metrics = figures
        if plan is not None and plan.after:
            try:
                with _autocast(args, dash):
                    found = plan.measure(target, loader, *pass_loss, dash.config)
            except Exception as err:
                if hasattr(err, "add_note"):
                    err.add_note(
                        f"DASHCallback: the diagnostics after the shrink failed; DASH's call {report.call} had "
                        "already shrunk the model (its report is in callback.reports)"
                    )
                raise
            figures.update(diagnostics_figures(found, "diag_after"))
        if figures:
            self._log(trainer, figures)
        return report

    def _log(self, trainer: Any, figures: dict[str, float]) -> None:
        """Log through ``trainer.log`` (log history and every ``report_to`` backend), or warn."""
        if trainer is None:
            warnings.warn(
                "DASHCallback found no Trainer to log its figures through (the callback event did not come from a "
                "transformers Trainer whose callbacks include it); they are in callback.metrics. Pass "
                "run(..., trainer=trainer), or log_factors=False to log nothing",
                UserWarning,
                stacklevel=3,
            )
            return
        trainer.log(dict(figures))


#: The name of the loss among the settings a rebuilt callback lacks.
_LOSS = "loss (loss_fn/batch_loss)"


def _as_json(value: Any) -> Any:
    """``value`` as plain JSON data (a tuple becomes a list), or None if it is not JSON data."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return None


def _calling_trainer(callback: Any) -> Any:
    """The ``Trainer`` whose callbacks include ``callback``, found on the call stack; None if none.

    The Trainer sends its callback events from its own methods (``self.callback_handler.on_...``),
    so while an event runs, a frame further up has the Trainer as ``self``. transformers hands
    callbacks no reference to the Trainer; this is how one can log through it.
    """
    frame = sys._getframe(1)
    try:
        while frame is not None:
            owner = frame.f_locals.get("self")
            if isinstance(owner, _tf.Trainer):
                handler = getattr(owner, "callback_handler", None)
                if any(cb is callback for cb in getattr(handler, "callbacks", ())):
                    return owner
            frame = frame.f_back
        return None
    finally:
        del frame


def _autocast(args: Any, dash: Any) -> Any:
    dtype = torch.bfloat16 if getattr(args, "bf16", False) else torch.float16 if getattr(args, "fp16", False) else None
    if dtype is None:
        return contextlib.nullcontext()
    device = next((p.device for g in dash.param_groups for p in g["params"]), torch.device("cpu"))
    return torch.autocast(device_type=device.type, dtype=dtype)
