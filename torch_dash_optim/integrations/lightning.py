"""DASH in PyTorch Lightning: a callback that shrinks when the training data grows.

Needs the ``lightning`` extra (``pip install "torch-dash-optim[lightning]"``).

Return a :class:`~torch_dash_optim.DASHWrapper` from ``configure_optimizers`` and add
:class:`DASHCallback` to the trainer:

.. code-block:: python

   class Model(L.LightningModule):
       def configure_optimizers(self):
           return DASHWrapper(torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9),
                              model=self, loss_fn=torch.nn.CrossEntropyLoss())

   trainer = L.Trainer(callbacks=[DASHCallback()], reload_dataloaders_every_n_epochs=1)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from torch import Tensor

from . import require
from ._data import dataset_size, replay_loader

_pl = require("lightning.pytorch", "lightning", "torch_dash_optim.integrations.lightning")

from .._nesting import describe, optimizer_chain  # noqa: E402
from ..chain import find_dash  # noqa: E402
from ..report import DASHReport  # noqa: E402
from ..wrapper import DASHWrapper, _check_losses  # noqa: E402

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
    dataset. When it has grown since the last epoch it saw (in this ``fit``, an earlier one, or
    the checkpoint it resumed from), it builds a loader over the whole dataset with
    ``shuffle=False`` (the dataset's own order: a dataset that grows by appending puts the new
    data last) and calls :meth:`DASHWrapper.on_new_data <torch_dash_optim.DASHWrapper.on_new_data>`
    on the wrapper among ``trainer.optimizers``, under the trainer's precision (so
    ``bf16-mixed`` runs the gradient pass in bfloat16 autocast, as training does). The real
    wrapper is called, so ``num_dash_calls`` and checkpoints are right. Call :meth:`request` to
    trigger it at the next epoch start instead (with your own loader if you like).

    Lightning re-reads a datamodule's ``train_dataloader`` only at a new ``fit`` or with
    ``Trainer(reload_dataloaders_every_n_epochs=1)``.

    Parameters
    ----------
    loss_fn, batch_loss:
        The loss for the gradient pass (see :class:`~torch_dash_optim.DASHWrapper`). By
        default the wrapper's own; if it has none, the module's ``training_step``
        (:func:`training_step_loss`).
    batch_size:
        Batch size of the pass (default: the training loader's).
    num_workers:
        Workers of the pass's loader (default 0).
    collate_fn:
        Collate function of the pass's loader (default: the training loader's).
    auto:
        Trigger on dataset growth (default). With ``False``, only :meth:`request` triggers.
    log_factors:
        Log ``dash/mean_factor`` and ``dash/at_floor`` with ``pl_module.log`` (default).

    Attributes
    ----------
    reports:
        The :class:`~torch_dash_optim.DASHReport` of every call made by this callback.

    Examples
    --------
    >>> from torch_dash_optim.integrations.lightning import DASHCallback
    >>> callback = DASHCallback(batch_size=64)
    >>> callback.state_dict()
    {'seen': None}
    """

    def __init__(
        self,
        *,
        loss_fn: Callable[[Any, Any], Tensor] | None = None,
        batch_loss: Callable[[Any, Any], Tensor] | None = None,
        batch_size: int | None = None,
        num_workers: int = 0,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        auto: bool = True,
        log_factors: bool = True,
    ) -> None:
        _check_losses(loss_fn, batch_loss)
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive int or None; got {batch_size!r}")
        self.loss_fn = loss_fn
        self.batch_loss = batch_loss
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.collate_fn = collate_fn
        self.auto = auto
        self.log_factors = log_factors
        self.reports: list[DASHReport] = []
        self._seen: int | None = None
        self._requested: list[Iterable[Any] | None] = []

    # -- triggers ----------------------------------------------------------------------------
    def request(self, loader: Iterable[Any] | None = None) -> None:
        """Call DASH at the start of the next training epoch, over ``loader`` or the training data.

        Parameters
        ----------
        loader:
            The batches of the pass: all data so far, in order, the new data last. ``None``
            (default): the trainer's whole training dataset, in order, ``shuffle=False``.
        """
        self._requested = [loader]

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        """Lightning hook: call :meth:`run` if DASH was requested or the training data grew.

        Parameters
        ----------
        trainer, pl_module:
            The ``Trainer`` and the ``LightningModule``, as Lightning passes them.
        """
        loader = trainer.train_dataloader
        size = dataset_size(loader)
        grown = self.auto and size is not None and self._seen is not None and size > self._seen
        if self._requested or grown:
            requested = self._requested[0] if self._requested else None
            self.run(trainer, pl_module, requested)
            self._requested = []
        if size is not None:
            self._seen = size

    def run(self, trainer: Any, pl_module: Any, loader: Iterable[Any] | None = None) -> DASHReport:
        """Call DASH now, over ``loader`` or over the trainer's whole training dataset.

        Parameters
        ----------
        trainer, pl_module:
            The ``Trainer`` (after its optimizers are set up) and the ``LightningModule``.
        loader:
            The batches of the pass (default: the training dataset, in order, ``shuffle=False``).

        Returns
        -------
        DASHReport
            What the call did (also appended to :attr:`reports`).
        """
        dash = self._find(trainer)
        if loader is None:
            loader = replay_loader(
                trainer.train_dataloader,
                batch_size=self.batch_size,
                num_workers=self.num_workers,
                collate_fn=self.collate_fn,
                who="DASHCallback",
            )
        loss_fn, batch_loss = self.loss_fn, self.batch_loss
        if loss_fn is None and batch_loss is None and dash.loss_fn is None and dash.batch_loss is None:
            batch_loss = training_step_loss(pl_module)
        with trainer.precision_plugin.forward_context():
            report = dash.on_new_data(loader, loss_fn=loss_fn, batch_loss=batch_loss)
        self.reports.append(report)
        if self.log_factors:
            pl_module.log_dict(
                {"dash/mean_factor": report.mean_factor, "dash/at_floor": report.at_floor},
                on_step=False,
                on_epoch=True,
            )
        return report

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
            ``{"seen": size}``: the training dataset's size at the last epoch start seen, or
            ``None`` before the first.
        """
        return {"seen": self._seen}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the state saved by :meth:`state_dict` (Lightning calls it on resume).

        Parameters
        ----------
        state_dict:
            A dict made by :meth:`state_dict`; the next epoch start compares the dataset's
            size with the saved one.
        """
        self._seen = state_dict.get("seen")
