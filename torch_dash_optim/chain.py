"""Reach the :class:`~torch_dash_optim.DASHWrapper` through whatever wraps it.

Frameworks hand training code their own object around the optimizer: Accelerate's
``AcceleratedOptimizer`` (also what the Hugging Face Trainer passes to its callbacks),
Lightning's ``LightningOptimizer``, Fabric's optimizer proxy; and optimizer wrappers such as
timm's ``Lookahead`` can sit outside the DASH wrapper too. :func:`find_dash` finds the wrapper
inside any of them and :func:`on_new_data` calls it, so one line works everywhere:

.. code-block:: python

   from torch_dash_optim import on_new_data

   report = on_new_data(optimizer, loader)   # whatever object the framework gave you
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._nesting import describe, optimizer_chain
from .report import DASHReport
from .wrapper import BatchLoss, Criterion, DASHWrapper

__all__ = ["find_dash", "on_new_data"]


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
    loss_fn, batch_loss, tol:
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
    return find_dash(optimizer).on_new_data(loader, loss_fn=loss_fn, batch_loss=batch_loss, tol=tol)
