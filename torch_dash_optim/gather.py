r"""The gradient pass of DASH: one pass over a loader, with nothing left behind.

The authors' direction is an exponential moving average of the negative batch gradients,
taken over the loader's batches in order, starting from zero, with no bias correction:

.. math::

    G_0 = 0, \qquad G_i = (1 - \alpha)\, G_{i-1} + \alpha\,\bigl(-\nabla L(B_i)\bigr).

It is accumulated in place in each parameter's ``.grad`` (multiplied by :math:`1-\alpha`
before every backward, then by :math:`-\alpha` at the end), so no copy of the model and no
parameter-sized buffer is needed beyond the gradients themselves. The ``.grad`` tensors the
user had are set aside (not copied) and put back afterwards, as are module modes and buffers,
on success and on any failure alike.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["GatherResult", "NonFiniteGradientError", "gather_direction", "move_to_device"]


class NonFiniteGradientError(FloatingPointError):
    """The gathered direction holds inf or NaN, so nothing was shrunk.

    Examples
    --------
    >>> issubclass(NonFiniteGradientError, FloatingPointError)   # except FloatingPointError catches it
    True
    """


@dataclass
class GatherResult:
    """Directions, aligned with the requested parameters (``None`` where no gradient reached).

    Attributes
    ----------
    directions:
        :math:`G` for each parameter, or ``None`` if the loss never reached it.
    num_batches:
        Number of batches seen.

    Examples
    --------
    >>> GatherResult([torch.zeros(2), None], num_batches=3).directions[1] is None
    True
    """

    directions: list[Tensor | None]
    num_batches: int


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) batch to ``device``.

    Tuples, lists and mappings are walked; other objects are returned unchanged.

    Examples
    --------
    >>> move_to_device({"x": torch.ones(1), "n": 3}, torch.device("cpu"))
    {'x': tensor([1.]), 'n': 3}
    """
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return type(batch)({k: move_to_device(v, device) for k, v in batch.items()})  # type: ignore[call-arg]
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(move_to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


@contextlib.contextmanager
def _preserved(model: nn.Module | None, trainable: Sequence[Tensor], train_mode: bool) -> Iterator[None]:
    """Set grads aside and the model's mode; restore grads, modes and buffers on exit."""
    saved_grads = [p.grad for p in trainable]
    modes = [(m, m.training) for m in model.modules()] if model is not None else []
    buffers = [(b, b.detach().clone()) for b in model.buffers()] if model is not None else []
    try:
        for p in trainable:
            p.grad = None
        if model is not None:
            model.train(train_mode)
        yield
    finally:
        for p, g in zip(trainable, saved_grads):
            p.grad = g
        for m, flag in modes:
            m.training = flag
        with torch.no_grad():
            for b, copy in buffers:
                b.copy_(copy)


#: Largest loss weight before the folded EMA is renormalised with one pass over the gradients
#: (with alpha=0.3, once every 20 batches).
_MAX_LOSS_WEIGHT = 1024.0


def _fold_decay(
    decay: float, device: torch.device, autocast_dtype: torch.dtype | None, params: Sequence[Tensor] = ()
) -> bool:
    """Whether to fold the EMA decay into the loss instead of decaying ``.grad`` per batch.

    Batch ``i`` then backpropagates ``loss * decay**-i`` (renormalised whenever the weight would
    exceed ``_MAX_LOSS_WEIGHT``), which by the linearity of backward accumulates the same EMA,
    up to float32 rounding, without a read-modify-write pass over every gradient per batch.
    Not with ``alpha == 1`` (nothing to fold), nor under float16 autocast, nor for float16
    parameters or a float16 loss, whose narrow range the weight could overflow.
    """
    if decay <= 0.0:
        return False
    if autocast_dtype == torch.float16 or any(p.dtype == torch.float16 for p in params):
        return False
    enclosing = torch.is_autocast_enabled(device.type) and torch.get_autocast_dtype(device.type)
    return enclosing != torch.float16


def _no_sync(model: nn.Module | None) -> contextlib.AbstractContextManager[Any]:
    no_sync = getattr(model, "no_sync", None)
    return no_sync() if callable(no_sync) else contextlib.nullcontext()


def _check_loss(loss: Any, index: int) -> Tensor:
    if not isinstance(loss, Tensor):
        raise TypeError(f"batch {index}: the loss must be a Tensor; got {type(loss).__name__}")
    if loss.numel() != 1:
        raise ValueError(
            f"batch {index}: the loss must be a scalar; got shape {tuple(loss.shape)}. "
            "Reduce it (e.g. reduction='mean') in the loss function"
        )
    if not loss.requires_grad:
        raise ValueError(
            f"batch {index}: the loss does not depend on any trainable parameter "
            "(is the model frozen, or was it computed under torch.no_grad()?)"
        )
    return loss


def gather_direction(
    params: Sequence[Tensor],
    loader: Iterable[Any],
    compute_loss: Callable[[Any], Tensor],
    *,
    alpha: float = 0.3,
    average: str = "ema",
    model: nn.Module | None = None,
    trainable: Sequence[Tensor] | None = None,
    train_mode: bool = False,
    device: torch.device | None = None,
    autocast_dtype: torch.dtype | None = None,
    sync: bool = False,
    names: Sequence[str] | None = None,
) -> GatherResult:
    r"""Gather the DASH direction :math:`G` (the averaged negative gradient) for ``params``.

    Parameters
    ----------
    params:
        Parameters whose direction is wanted.
    loader:
        Iterable of batches, visited once in order.
    compute_loss:
        ``compute_loss(batch) -> scalar loss``; the batch is already on ``device``.
    alpha:
        EMA weight of each new batch (``average="ema"``).
    average:
        ``"ema"`` (the authors') or ``"mean"`` (a plain mean over batches).
    model:
        The model, if known: it is put in eval mode (or train mode with ``train_mode``) for
        the pass, and its modes and buffers are restored afterwards. Under DDP its
        ``no_sync()`` keeps backward from all-reducing every batch.
    trainable:
        Every parameter whose ``.grad`` the pass may touch; defaults to ``params``. Their
        gradients are set aside and restored exactly (``None`` stays ``None``).
    train_mode:
        Gather with the model in train mode instead of eval mode.
    device:
        Where batches are moved; defaults to the first parameter's device.
    autocast_dtype:
        If given, the forward pass runs under :class:`torch.autocast` with this dtype. An
        enclosing autocast is honoured in any case.
    sync:
        All-reduce (average) the gathered directions once over the default process group,
        so that every rank computes identical factors.
    names:
        Names of ``params``, used in error messages.

    Returns
    -------
    GatherResult

    Raises
    ------
    ValueError
        If the loader is empty or a loss is not a scalar that depends on the parameters.
    NonFiniteGradientError
        If the gathered direction holds inf or NaN.

    Examples
    --------
    >>> lin = torch.nn.Linear(2, 1, bias=False)
    >>> data = [(torch.ones(4, 2), torch.zeros(4, 1))]
    >>> res = gather_direction([lin.weight], data, lambda b: ((lin(b[0]) - b[1]) ** 2).mean(), alpha=1.0)
    >>> res.num_batches, lin.weight.grad is None   # the user's grad (None) is untouched
    (1, True)
    """
    params = list(params)
    trainable = list(trainable) if trainable is not None else params
    if device is None:
        device = params[0].device if params else torch.device("cpu")
    directions: list[Tensor | None]
    with _preserved(model, trainable, train_mode), torch.enable_grad(), _no_sync(model):
        num_batches = 0
        decay = 1.0 - alpha
        # The EMA's decay is folded into the loss weight (see _fold_decay), so most batches
        # need no pass over the gradients; otherwise .grad is decayed before every backward.
        fold = average == "ema" and _fold_decay(decay, device, autocast_dtype, trainable)
        weight = 1.0  # invariant: p.grad == weight * sum_j decay**(i - j) * grad_j
        for batch in loader:
            if num_batches and average == "ema":
                if not fold or weight / decay > _MAX_LOSS_WEIGHT:
                    live = [p.grad for p in params if p.grad is not None]
                    if live:
                        torch._foreach_mul_(live, decay if not fold else 1.0 / weight)
                    weight = 1.0
                if fold:
                    weight /= decay
            batch = move_to_device(batch, device)
            ctx = (
                torch.autocast(device.type, dtype=autocast_dtype)
                if autocast_dtype is not None
                else contextlib.nullcontext()
            )
            with ctx:
                loss = _check_loss(compute_loss(batch), num_batches)
            if num_batches == 0 and loss.dtype == torch.float16:
                fold = False  # decided on the first batch, whose weight is 1 either way
            (loss * weight if weight != 1.0 else loss).backward()
            num_batches += 1
        if num_batches == 0:
            raise ValueError("the loader yielded no batch; pass a loader over the data seen so far")
        directions = [p.grad for p in params]
    present = [d for d in directions if d is not None]
    scale = -alpha / weight if average == "ema" else -1.0 / num_batches
    if present:
        torch._foreach_mul_(present, scale)
    if sync:
        directions = _all_reduce(params, directions)
    _check_finite(directions, names)
    return GatherResult(directions, num_batches)


def _all_reduce(params: Sequence[Tensor], directions: list[Tensor | None]) -> list[Tensor | None]:
    import torch.distributed as dist

    from .distributed import is_dtensor

    world = dist.get_world_size()
    # FSDP2 (DTensor) gradients were already averaged over the ranks by FSDP's reduce-scatter.
    index = [i for i, p in enumerate(params) if not is_dtensor(p)]
    if not index:
        return directions
    device = params[index[0]].device
    # Which parameters the loss reached on some rank: one small all-reduce, so that a parameter
    # reached nowhere stays skipped, and one reached on some ranks only enters every all-reduce.
    reached = torch.tensor([float(directions[i] is not None) for i in index], device=device)
    dist.all_reduce(reached)
    out = list(directions)
    filled: list[Tensor] = []
    for i, hit in zip(index, reached.tolist(), strict=True):  # one host sync, after the loop
        if hit:
            d = directions[i]
            out[i] = d if d is not None else torch.zeros_like(params[i])
            filled.append(out[i])  # type: ignore[arg-type]
    handles = [dist.all_reduce(d, async_op=True) for d in filled]
    for h in handles:
        h.wait()
    if filled:
        torch._foreach_div_(filled, float(world))
    return out


def _check_finite(directions: Sequence[Tensor | None], names: Sequence[str] | None) -> None:
    index = [i for i, d in enumerate(directions) if d is not None]
    if not index:
        return
    norms = torch.stack([n.float() for n in torch._foreach_norm([directions[i] for i in index])])
    finite = torch.isfinite(norms)
    if bool(finite.all()):  # the one host sync of the pass, after the loop
        return
    bad = [names[i] if names else f"param[{i}]" for i, ok in zip(index, finite.tolist()) if not ok]
    raise NonFiniteGradientError(
        f"the gathered gradient is inf or NaN for {len(bad)} parameter(s) ({', '.join(bad[:5])}"
        f"{', ...' if len(bad) > 5 else ''}); nothing was shrunk. Check the model and loss for "
        "inf/NaN on this data (under fp16 autocast, try bfloat16)"
    )
