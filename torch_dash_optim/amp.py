r"""Mixed precision with DASH and SAM: a :class:`torch.amp.GradScaler` recipe for SAM's two steps.

With a plain base optimizer nothing special is needed: pass **the wrapper** (never its inner
optimizer) to every GradScaler call, ``scaler.scale(loss).backward(); scaler.step(opt);
scaler.update()``, and the result is that of the bare optimizer. GradScaler keys its
bookkeeping by ``id(optimizer)``, so mixing ``scaler.unscale_(opt.optimizer)`` with
``scaler.step(opt)`` would unscale the gradients twice.

SAM takes two backward passes per step, and ``scaler.step`` would run the second one with
gradients that were never unscaled. :func:`sam_amp_step` treats each of the two passes as
one GradScaler iteration: scale the loss, backward, ``unscale_``, check for inf/NaN,
``update``. An inf/NaN in either pass skips the *whole* SAM step (after the first pass the
perturbation is undone exactly), and the scale backs off as usual. Because ``update`` runs
once per pass, ``growth_interval`` counts passes, two per SAM step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.optim import Optimizer

from ._nesting import optimizer_chain
from .sam import SAM

__all__ = ["grads_finite", "sam_amp_step"]


def _find_sam(optimizer: Optimizer) -> SAM:
    """The SAM inside ``optimizer`` (or ``optimizer`` itself), or a TypeError."""
    for inner in optimizer_chain(optimizer):
        if isinstance(inner, SAM):
            return inner
    raise TypeError(
        f"sam_amp_step needs a SAM optimizer (or a DASHWrapper around one); got {type(optimizer).__name__}. "
        "For other optimizers use scaler.step(opt) directly"
    )


def grads_finite(optimizer: Optimizer) -> bool:
    """Whether every gradient held by ``optimizer``'s parameters is finite (one host sync).

    Parameters
    ----------
    optimizer:
        The optimizer whose parameters' ``.grad`` are checked (parameters without a gradient
        are ignored).

    Returns
    -------
    bool
        ``False`` if any gradient holds inf or NaN; ``True`` otherwise, also when no
        parameter has a gradient.

    Examples
    --------
    >>> p = torch.nn.Parameter(torch.ones(2))
    >>> p.grad = torch.tensor([1.0, float("inf")])
    >>> grads_finite(torch.optim.SGD([p], lr=0.1))
    False
    """
    grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    if not grads:
        return True
    norms = torch._foreach_norm(grads)
    device = norms[0].device
    return bool(torch.stack([n.float().to(device) for n in norms]).isfinite().all())


def sam_amp_step(
    optimizer: Optimizer, scaler: torch.amp.GradScaler, closure: Callable[[], Tensor]
) -> tuple[Tensor, bool]:
    """One SAM step with a GradScaler: unscale before each of the two steps, skip both on inf/NaN.

    Parameters
    ----------
    optimizer:
        A :class:`~torch_dash_optim.SAM`, or a :class:`~torch_dash_optim.DASHWrapper` around
        one. Pass the same object to every other GradScaler call.
    scaler:
        The GradScaler (``torch.amp.GradScaler("cuda")``, or ``"cpu"``).
    closure:
        Computes and returns the loss at the current weights, forward only (run it under
        :class:`torch.autocast` as usual); it must **not** call ``backward``. It is called twice.

    Returns
    -------
    tuple of (Tensor, bool)
        The loss of the first pass (at the unperturbed weights), and whether the step was
        taken (``False`` when either pass produced inf/NaN gradients; then the weights and
        optimizer state are exactly as before, and the scale has backed off).

    Examples
    --------
    >>> from torch_dash_optim import SAM
    >>> model = torch.nn.Linear(3, 1)
    >>> opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1)
    >>> scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    >>> x, y = torch.randn(8, 3), torch.randn(8, 1)
    >>> loss, stepped = sam_amp_step(opt, scaler, lambda: torch.nn.functional.mse_loss(model(x), y))
    >>> stepped
    True
    """
    sam = _find_sam(optimizer)
    optimizer.zero_grad(set_to_none=True)
    with torch.enable_grad():
        loss = closure()
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    if not grads_finite(optimizer):
        optimizer.zero_grad(set_to_none=True)
        scaler.update()  # backs off: the inf was recorded by unscale_
        return loss.detach(), False
    sam.first_step(zero_grad=True)
    scaler.update()
    try:
        with torch.enable_grad():
            perturbed = closure()
        scaler.scale(perturbed).backward()
        scaler.unscale_(optimizer)
        finite = grads_finite(optimizer)
    except BaseException:
        sam.undo_first_step()
        optimizer.zero_grad(set_to_none=True)
        raise
    if not finite:
        sam.undo_first_step()
        optimizer.zero_grad(set_to_none=True)
        scaler.update()
        return loss.detach(), False
    sam.second_step()
    scaler.update()
    return loss.detach(), True
