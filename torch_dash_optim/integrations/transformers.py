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
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from . import require
from ._data import check_pass_options, dataset_size, pass_batch_size, replay_loader

_tf = require("transformers", "hf", "torch_dash_optim.integrations.transformers")

from .._checks import check_losses as _check_losses  # noqa: E402
from ..report import DASHReport  # noqa: E402
from ..wrapper import find_dash  # noqa: E402

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
    seen:
        Dataset size already trained on, for a model that keeps no record of it. Default None:
        the model's record, else the first ``train()`` only records the size.
    has_loss, restored:
        Set by the Trainer's rebuild from a checkpoint (through :meth:`state`): whether the
        saved callback had a loss of its own, and that this is a rebuild. Leave them.

    Attributes
    ----------
    reports:
        The :class:`~torch_dash_optim.DASHReport` of every call made by this callback.

    Warns
    -----
    UserWarning
        When growth cannot be seen (a dataset without a length), or when a model trained before
        comes with no record of the data it saw.

    Examples
    --------
    >>> from torch_dash_optim.integrations.transformers import DASHCallback
    >>> DASHCallback(seen=1000).state()["args"]
    {'batch_size': None, 'seen': 1000, 'has_loss': False, 'restored': True}
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
        seen: int | None = None,
        has_loss: bool = False,
        restored: bool = False,
    ) -> None:
        if getattr(self, "_adopting", False):  # the user's callback, rebuilt from a checkpoint
            self._adopting = False
            self.seen, self._loaded = seen, True
            return
        _check_losses(loss_fn, batch_loss)
        check_pass_options(batch_size, pass_loader)
        if seen is not None and (not isinstance(seen, int) or isinstance(seen, bool) or seen < 0):
            raise ValueError(f"seen must be a non-negative int (a number of examples) or None; got {seen!r}")
        self.loss_fn = loss_fn
        self.batch_loss = batch_loss
        self.batch_size = batch_size
        self.pass_loader = pass_loader
        self.seen = seen
        self.reports: list[DASHReport] = []
        self._explicit = None if restored else seen
        self._loaded = restored
        self._lost_loss = restored and has_loss
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
            ``{"args": {"batch_size": ..., "seen": ..., "has_loss": ..., "restored": True},
            "attributes": {}}``, the form the Trainer uses to rebuild the callback on resume.
            The loss and ``pass_loader`` cannot be saved: the rebuild takes them from this
            callback.
        """
        _exports.last = weakref.ref(self)
        batch_size = self.batch_size if self.batch_size is None or isinstance(self.batch_size, (int, str)) else None
        has_loss = self.loss_fn is not None or self.batch_loss is not None
        return {
            "args": {"batch_size": batch_size, "seen": self.seen, "has_loss": has_loss, "restored": True},
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
        if self._lost_loss:
            raise ValueError(
                "DASHCallback was rebuilt by the Trainer from the checkpoint (restore_callback_states_from_checkpoint"
                "=True) without the loss given to the original callback, which it could not find; nothing was "
                "changed. Pass the callback to Trainer(callbacks=[...]) and use one DASHCallback per Trainer"
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
            self.run(args, kwargs["optimizer"], loader, requested, grown_by=size - seen if grown else None)  # type: ignore[operator]
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
    ) -> DASHReport:
        """Call DASH now, over ``loader`` or over the whole dataset of ``train_loader``.

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

        Returns
        -------
        DASHReport
            What the call did (also appended to :attr:`reports`).
        """
        dash = find_dash(optimizer)
        if loader is None and self.pass_loader is not None:
            loader = self.pass_loader(getattr(train_loader, "dataset", None))
        if loader is None:
            loader = replay_loader(
                train_loader,
                batch_size=pass_batch_size(self.batch_size, grown_by, args.per_device_train_batch_size),
                who="DASHCallback",
            )
        loss_fn, batch_loss = self.loss_fn, self.batch_loss
        if loss_fn is None and batch_loss is None and dash.loss_fn is None and dash.batch_loss is None:
            batch_loss = model_loss
        with _autocast(args, dash):
            report = dash.on_new_data(loader, loss_fn=loss_fn, batch_loss=batch_loss)
        self.reports.append(report)
        return report


def _autocast(args: Any, dash: Any) -> Any:
    dtype = torch.bfloat16 if getattr(args, "bf16", False) else torch.float16 if getattr(args, "fp16", False) else None
    if dtype is None:
        return contextlib.nullcontext()
    device = next((p.device for g in dash.param_groups for p in g["params"]), torch.device("cpu"))
    return torch.autocast(device_type=device.type, dtype=dtype)
