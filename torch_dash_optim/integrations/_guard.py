"""Keep DASH's gradient pass from changing the optimizers it does not shrink with.

A framework's training step, run as the pass's loss, may step every optimizer (a GAN's
generator and discriminator under manual optimization). The wrapped optimizer refuses to step
during the pass by itself; :func:`guard_others` makes every other optimizer and scheduler refuse
too, before they change anything, and puts back the other parameters' gradients and
``requires_grad`` flags when the pass ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from .._nesting import describe, optimizer_chain
from ..wrapper import find_dash

__all__ = ["PassSteppedError", "guard_others"]


class PassSteppedError(RuntimeError):
    """Raised when DASH's gradient pass tries to step an optimizer or a scheduler."""


def _refuse(what: str, who: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise PassSteppedError(
            f"{who}: the loss of DASH's gradient pass tried to step {what}, before it changed anything; "
            "the pass must only compute a loss. Pass batch_loss=fn (fn(model, batch) -> loss, no optimizer "
            "or scheduler steps, no backward) to the callback or the DASHWrapper"
        )

    return refuse


@contextlib.contextmanager
def guard_others(
    dash: Any, optimizers: Sequence[Any], schedulers: Sequence[Any], module: nn.Module | None, *, who: str
) -> Iterator[None]:
    """While the pass runs, refuse every step of ``optimizers`` other than ``dash``'s and of ``schedulers``.

    The gradients and ``requires_grad`` of the parameters ``dash`` does not hold are put back at the end.
    """
    own = {id(p) for g in dash.param_groups for p in g["params"]}
    others: list[tuple[int, Any]] = []
    for i, opt in enumerate(optimizers):
        try:
            if find_dash(opt) is dash:
                continue
        except TypeError:
            pass
        others.append((i, opt))
    handles = []
    patched: list[Any] = []
    params: dict[int, torch.Tensor] = {}
    for _, opt in others:
        for group in getattr(opt, "param_groups", []):
            for p in group["params"]:
                if id(p) not in own:
                    params[id(p)] = p
    if module is not None:
        for p in module.parameters():
            if id(p) not in own:
                params[id(p)] = p
    saved = [(p, p.requires_grad, None if p.grad is None else p.grad.detach().clone()) for p in params.values()]
    try:
        for i, opt in others:
            chain = optimizer_chain(opt)
            what = f"optimizer {i} ({describe(chain)})"
            for link in chain:
                if isinstance(link, torch.optim.Optimizer):
                    handles.append(link.register_step_pre_hook(_refuse(what, who)))
        for i, sched in enumerate(schedulers):
            if sched is not None and hasattr(sched, "step"):
                sched.__dict__["step"] = _refuse(f"learning-rate scheduler {i} ({type(sched).__name__})", who)
                patched.append(sched)
        yield
    finally:
        for handle in handles:
            handle.remove()
        for sched in patched:
            sched.__dict__.pop("step", None)
        with torch.no_grad():
            for p, requires_grad, grad in saved:
                if p.requires_grad != requires_grad:
                    p.requires_grad_(requires_grad)
                p.grad = grad
