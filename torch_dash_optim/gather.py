r"""The gradient pass of DASH: one pass over a loader, with nothing left behind.

The authors' direction is an exponential moving average of the negative batch gradients,
taken over the loader's batches in order, starting from zero, with no bias correction:

.. math::

    G_0 = 0, \qquad G_i = (1 - \alpha)\, G_{i-1} + \alpha\,\bigl(-\nabla L(B_i)\bigr).

It is accumulated in place in each parameter's ``.grad`` (multiplied by :math:`1-\alpha`
before every backward, then by :math:`-\alpha` at the end), so no copy of the model and no
parameter-sized buffer is needed beyond the gradients themselves. The ``.grad`` tensors the
user had are set aside (not copied) and put back afterwards, as are module modes and buffers
(rebound to the very tensors the modules held, with their values, and with their shape and
storage where a forward resized them in place, as the per-channel observers of a freshly
prepared QAT model do), on success and on any failure alike; the restore runs to its end even
under Ctrl-C. Backward accumulates into the
tracked parameters only (``backward(inputs=...)``), so a parameter outside them (a loss
module's own weight, a backbone outside the optimizer) never gets a ``.grad`` from the pass.

**Hooks.** Every batch is backpropagated on its own, at its own scale (``.grad`` is decayed
by :math:`1-\alpha` before each backward, not the loss weighted by :math:`(1-\alpha)^{-i}`),
so every gradient hook sees the true gradient of that one batch, as in the authors' per-batch
rule: a ``Tensor.register_hook`` on a parameter or on an activation in forward (clipping an
activation's gradient, say), a module backward hook, a global module backward hook. A hook
need not be linear, and autograd does not let a hook on an activation be seen before it runs,
so no faster schedule that rescales the loss can be used safely. A post-accumulate-grad hook
(``register_post_accumulate_grad_hook``, the "optimizer step in backward" pattern) would run
on the pass's accumulated gradients and, with that pattern, train the model; such parameters
are refused with an error.

**Activation checkpointing** must be non-reentrant (``use_reentrant=False``): the reentrant
kind cannot backpropagate into chosen parameters only, and is refused with an error that says
so (before anything is changed).

**Modules that write their weights in forward.** ``nn.Embedding`` and ``nn.EmbeddingBag``
with ``max_norm`` renormalise the rows they look up, in place. Their weights are saved before
the pass and put back afterwards.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ._interrupts import deferred_interrupts

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

    Tuples, lists and mappings are walked; other objects are returned unchanged. A mutable
    mapping is rebuilt as a shallow copy of itself (so a ``defaultdict`` keeps its factory and a
    ``UserDict`` subclass its attributes); another mapping as ``type(batch)(dict_of_values)``.

    Parameters
    ----------
    batch:
        A tensor, or tuples, lists, named tuples and mappings of them, nested to any depth.
    device:
        Where the tensors go (copied with ``non_blocking=True``).

    Returns
    -------
    Any
        A batch of the same structure and container types, with every tensor on ``device``.

    Raises
    ------
    TypeError
        For a read-only mapping type that cannot be built from a dict.

    Examples
    --------
    >>> move_to_device({"x": torch.ones(1), "n": 3}, torch.device("cpu"))
    {'x': tensor([1.]), 'n': 3}
    """
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        moved = {k: move_to_device(v, device) for k, v in batch.items()}
        if isinstance(batch, MutableMapping):
            out = copy.copy(batch)
            for k, v in moved.items():
                out[k] = v
            return out
        try:
            return type(batch)(moved)  # type: ignore[call-arg]
        except TypeError as err:
            raise TypeError(
                f"cannot move a batch of type {type(batch).__name__} to {device}: it is a read-only Mapping "
                f"that cannot be built from a dict ({err}); yield a dict from the loader, or pass "
                "batch_loss=fn that moves the batch itself"
            ) from None
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(move_to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


#: Modules whose forward writes their own weight in place, when ``max_norm`` is set.
_RENORMING = (nn.Embedding, nn.EmbeddingBag)


@dataclass
class _SavedTensor:
    """A tensor's values and its layout (storage, offset, size, stride), to put both back in place."""

    tensor: Tensor
    values: Tensor
    storage: Any  # None where the layout cannot be read (sparse tensors, tensor subclasses)
    offset: int
    size: torch.Size
    stride: tuple[int, ...]

    @classmethod
    def of(cls, t: Tensor) -> _SavedTensor:
        values = t.detach().clone()
        try:
            storage = t.untyped_storage()
            storage.data_ptr()
            offset, stride = t.storage_offset(), t.stride()
        except (RuntimeError, NotImplementedError):
            return cls(t, values, None, 0, t.size(), ())
        return cls(t, values, storage, offset, t.size(), stride)

    def restore(self) -> None:
        """Put the layout back if a forward changed it (``resize_``, ``set_``), then the values."""
        t = self.tensor
        if self.storage is not None and (
            t.size() != self.size
            or t.stride() != self.stride
            or t.storage_offset() != self.offset
            or t.untyped_storage().data_ptr() != self.storage.data_ptr()
        ):
            # Rebind the very tensor object to its own storage (which resize_ may have grown in place,
            # or set_ swapped out): every module or observer that holds this tensor sees it restored,
            # and views that share its storage still do.
            t.set_(self.storage, self.offset, self.size, self.stride)
        t.copy_(self.values)


@contextlib.contextmanager
def _preserved(model: nn.Module | None, trainable: Sequence[Tensor], train_mode: bool) -> Iterator[None]:
    """Set grads aside and the model's mode; restore grads, modes, buffers and weights on exit, even under Ctrl-C."""
    # Buffers are restored by rebinding each module's buffer dictionary to the tensors it held (a
    # forward may rebind ``self.count = self.count + 1``), then putting back each tensor's layout
    # (a forward may resize it in place, as the per-channel observers of a freshly prepared QAT
    # model do on their first pass) and its values.
    saved_grads = [p.grad for p in trainable]
    modules = list(model.modules()) if model is not None else []
    modes = [m.training for m in modules]
    buffers = [dict(m._buffers) for m in modules]
    unique = {id(b): b for d in buffers for b in d.values() if b is not None}
    copies = [_SavedTensor.of(b) for b in unique.values()]
    written = [
        (m.weight, m.weight.detach().clone())
        for m in modules
        if isinstance(m, _RENORMING) and m.max_norm is not None and isinstance(m.weight, Tensor)
    ]
    try:
        for p in trainable:
            p.grad = None
        if model is not None:
            model.train(train_mode)
        yield
    finally:
        with deferred_interrupts():
            for p, g in zip(trainable, saved_grads):
                p.grad = g
            for m, flag in zip(modules, modes):
                m.training = flag
            for m, saved in zip(modules, buffers):
                if m._buffers.keys() != saved.keys() or any(m._buffers[k] is not v for k, v in saved.items()):
                    m._buffers.clear()
                    m._buffers.update(saved)
            with torch.no_grad():
                for saved in copies:
                    saved.restore()
                for w, c in written:
                    w.copy_(c)


def _refuse_post_accumulate_hooks(params: Sequence[Tensor], names: Mapping[int, str]) -> None:
    """Refuse parameters with a post-accumulate-grad hook (it would see the pass's running sum)."""
    for p in params:
        if getattr(p, "_post_accumulate_grad_hooks", None):
            name = names.get(id(p), f"of shape {tuple(p.shape)}")
            raise ValueError(
                f"parameter {name} has a post-accumulate-grad hook (Tensor.register_post_accumulate_grad_hook, "
                "e.g. an optimizer step in backward); the gradient pass would run it on every batch with "
                "the pass's gradients and train the model. Remove the hook for the call (handle.remove()) "
                "and register it again afterwards"
            )


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
        The direction :math:`G` of each parameter in ``params`` (in the same order; ``None``
        where the loss never reached it) and the number of batches seen.

    Raises
    ------
    ValueError
        If the loader is empty, a loss is not a scalar that depends on the parameters, or a
        parameter has a post-accumulate-grad hook.
    RuntimeError
        If called under :class:`torch.inference_mode`.
    TypeError
        If a parameter gets a sparse gradient.
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
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            "the gradient pass was started under torch.inference_mode(), where no gradient can be "
            "computed (torch.enable_grad() does not lift it); call on_new_data outside the inference_mode block"
        )
    if device is None:
        device = params[0].device if params else torch.device("cpu")
    name_of = dict(zip(map(id, params), names)) if names is not None else {}
    _refuse_post_accumulate_hooks(trainable, name_of)
    # Backward accumulates into the requested parameters only, so nothing outside them gets a
    # .grad; FSDP2 (DTensor) parameters get theirs from FSDP's reduce-scatter, so not with them.
    from .distributed import is_dtensor

    inputs = [p for p in params if p.requires_grad]
    backward_inputs = None if any(is_dtensor(p) for p in trainable) else inputs
    directions: list[Tensor | None]
    with _preserved(model, trainable, train_mode), torch.enable_grad(), _no_sync(model):
        num_batches = 0
        decay = 1.0 - alpha
        for batch in loader:
            if num_batches and average == "ema":
                # G_i = decay * G_{i-1} + grad_i: decay what is there, then backward adds grad_i.
                # The loss is never rescaled instead, so every hook (on a parameter, a module or an
                # activation; possibly non-linear, e.g. clipping) sees the true per-batch gradient.
                live = [p.grad for p in params if p.grad is not None]
                if live:
                    torch._foreach_mul_(live, decay)
            batch = move_to_device(batch, device)
            ctx = (
                torch.autocast(device.type, dtype=autocast_dtype)
                if autocast_dtype is not None
                else contextlib.nullcontext()
            )
            with ctx:
                loss = _check_loss(compute_loss(batch), num_batches)
            if backward_inputs is None or backward_inputs:
                _backward(loss, backward_inputs)
            num_batches += 1
        if num_batches == 0:
            raise ValueError("the loader yielded no batch; pass a loader over the data seen so far")
        directions = [p.grad for p in params]
        _check_dense(directions, names)
    present = [d for d in directions if d is not None]
    scale = -alpha if average == "ema" else -1.0 / num_batches
    if present:
        torch._foreach_mul_(present, scale)
    if sync:
        directions = _all_reduce(params, directions)
    _check_finite(directions, names)
    return GatherResult(directions, num_batches)


def _backward(loss: Tensor, inputs: list[Tensor] | None) -> None:
    """``loss.backward(inputs=inputs)``, with our own error for reentrant activation checkpointing."""
    try:
        loss.backward(inputs=inputs)
    except RuntimeError as err:
        if inputs is None or "use_reentrant=True" not in str(err):
            raise
        raise RuntimeError(
            "the model uses reentrant activation checkpointing (torch.utils.checkpoint.checkpoint(..., "
            "use_reentrant=True), or checkpoint_sequential), which cannot backpropagate into chosen parameters "
            "only (backward(inputs=...)), as DASH's gradient pass does so that no parameter outside the "
            "optimizer gets a .grad. Pass use_reentrant=False to checkpoint (torch's recommended setting; the "
            "gradients are the same)"
        ) from None


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


def _check_dense(directions: Sequence[Tensor | None], names: Sequence[str] | None) -> None:
    for i, d in enumerate(directions):
        if d is not None and d.layout != torch.strided:
            name = names[i] if names else f"param[{i}]"
            raise TypeError(
                f"parameter {name} got a {d.layout} gradient (e.g. nn.Embedding(sparse=True)); DASH shrinks "
                "dense Conv/Linear weights. Pass model=... so that only Conv/Linear parameters are selected, "
                'or put this parameter in a param group with "dash": False'
            )


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
