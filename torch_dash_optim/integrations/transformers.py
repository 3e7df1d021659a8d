"""DASH in the Hugging Face ``Trainer``: a ``TrainerCallback`` that shrinks when the data grows.

Needs the ``hf`` extra (``pip install "torch-dash-optim[hf]"``: transformers and accelerate).

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
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from . import require
from ._data import dataset_size, replay_loader

_tf = require("transformers", "hf", "torch_dash_optim.integrations.transformers")

from ..chain import find_dash  # noqa: E402
from ..report import DASHReport  # noqa: E402
from ..wrapper import _check_losses  # noqa: E402

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


class DASHCallback(_tf.TrainerCallback, _ExportableState):  # type: ignore[misc]
    """Call DASH in a Hugging Face ``Trainer`` when its training data has grown.

    At ``on_train_begin`` (every ``trainer.train()``), the callback compares the size of the
    training dataset with the size it saw last. If it has grown, it builds a loader over the
    whole dataset with ``shuffle=False`` and the Trainer's collator and batch size, and calls
    :meth:`DASHWrapper.on_new_data <torch_dash_optim.DASHWrapper.on_new_data>` through the
    ``AcceleratedOptimizer`` the Trainer hands to callbacks, under ``bf16``/``fp16`` autocast if
    the training arguments ask for it. Dict batches go through :func:`model_loss` (the model's
    own loss) unless the wrapper or the callback has a loss.

    The size seen is part of the callback's state: with
    ``TrainingArguments(restore_callback_states_from_checkpoint=True)`` a resumed run knows it.
    Call :meth:`request` to shrink at the next ``train()`` whatever the size.

    Parameters
    ----------
    loss_fn, batch_loss:
        The loss for the gradient pass (see :class:`~torch_dash_optim.DASHWrapper`). Default:
        the wrapper's own, else :func:`model_loss`.
    batch_size:
        Batch size of the pass (default: ``per_device_train_batch_size``).
    seen:
        Dataset size already trained on (default None: the first ``train()`` only records it).

    Attributes
    ----------
    reports:
        The :class:`~torch_dash_optim.DASHReport` of every call made by this callback.

    Examples
    --------
    >>> from torch_dash_optim.integrations.transformers import DASHCallback
    >>> DASHCallback(seen=1000).state()
    {'args': {'batch_size': None, 'seen': 1000}, 'attributes': {}}
    """

    def __init__(
        self,
        *,
        loss_fn: Callable[[Any, Any], Tensor] | None = None,
        batch_loss: Callable[[Any, Any], Tensor] | None = None,
        batch_size: int | None = None,
        seen: int | None = None,
    ) -> None:
        _check_losses(loss_fn, batch_loss)
        self.loss_fn = loss_fn
        self.batch_loss = batch_loss
        self.batch_size = batch_size
        self.seen = seen
        self.reports: list[DASHReport] = []
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
            ``{"args": {"batch_size": ..., "seen": ...}, "attributes": {}}``, the form the
            Trainer uses to rebuild the callback on resume.
        """
        return {"args": {"batch_size": self.batch_size, "seen": self.seen}, "attributes": {}}

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Trainer event: call :meth:`run` if DASH was requested or the training data grew.

        Parameters
        ----------
        args, state, control:
            The ``TrainingArguments``, ``TrainerState`` and ``TrainerControl``, as the
            Trainer passes them.
        **kwargs:
            The Trainer's other objects; ``optimizer`` and ``train_dataloader`` are used.
        """
        loader = kwargs.get("train_dataloader")
        size = dataset_size(loader)
        grown = size is not None and self.seen is not None and size > self.seen
        if self._requested or grown:
            requested = self._requested[0] if self._requested else None
            self.run(args, kwargs["optimizer"], loader, requested)
            self._requested = []
        if size is not None:
            self.seen = size

    def run(
        self, args: Any, optimizer: Any, train_loader: Any, loader: Iterable[Any] | None = None
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

        Returns
        -------
        DASHReport
            What the call did (also appended to :attr:`reports`).
        """
        dash = find_dash(optimizer)
        if loader is None:
            loader = replay_loader(
                train_loader,
                batch_size=self.batch_size or args.per_device_train_batch_size,
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
