r"""DASH under ``torch.distributed``: DDP replicas and FSDP2 (``fully_shard``) shards.

**DDP.** Each rank gathers its own direction over its own shard of the data, inside
``model.no_sync()`` (no all-reduce per batch), and the directions are then averaged over the
ranks once (:func:`~torch_dash_optim.gather.gather_direction` with ``sync=True``). Because the
EMA is linear, the average of the ranks' EMAs is the EMA of the rank-averaged batch
gradients, i.e. the gradient of the loss on the union of the ranks' ``i``-th batches. Every
rank then holds the same direction and computes the same factors, so the replicas stay
bit-identical.

**FSDP2.** Parameters are :class:`~torch.distributed.tensor.DTensor` shards, split by rows
(dim 0). FSDP reduce-scatters (averages) the gradient of every batch during the gathering
pass, as it does in training, so the direction needs no further reduction. Units that lie
within a row (a Linear row, a Conv ``(out, in)`` kernel slice or output filter) are whole on
one rank, and their factors are computed locally. Units that span the sharded dimension (a
bias vector, or any weight under ``granularity="tensor"``) need the dot product and the two
squared norms summed over the shards: :func:`sharded_dash_factors` does that with one
all-reduce of three numbers per such parameter, so every rank gets the same factor.
:func:`sharded_dash_factors_many` is what the wrapper calls: plain tensors in one grouped call
(:func:`~torch_dash_optim.functional.dash_factors_many`), DTensor shards one by one.

Nothing here needs a GPU; both paths are tested with the gloo backend on CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from . import functional as F
from ._deprecation import moved_names

__all__ = ["check_model", "is_dtensor", "local_tensor", "sharded_dash_factors", "sharded_dash_factors_many"]

# The former name of sharded_dash_factors, until version 0.4.0.
__getattr__ = moved_names(__name__, {"dash_factors": "torch_dash_optim.distributed.sharded_dash_factors"})


def _dtensor_type() -> type | None:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # torch built without distributed support
        return None
    return DTensor


def is_dtensor(tensor: Any) -> bool:
    """Whether ``tensor`` is a :class:`~torch.distributed.tensor.DTensor` (an FSDP2 shard).

    Parameters
    ----------
    tensor:
        Any object; it need not be a tensor.

    Returns
    -------
    bool
        ``True`` for a DTensor, ``False`` otherwise (always ``False`` where this build of
        torch has no DTensor).

    Examples
    --------
    >>> is_dtensor(torch.ones(2))
    False
    """
    cls = _dtensor_type()
    return cls is not None and isinstance(tensor, cls)


def local_tensor(tensor: Tensor) -> Tensor:
    """The local shard of a DTensor (sharing its storage), or ``tensor`` itself.

    In-place operations on the result change the DTensor, which is how the shrink reaches
    FSDP2 parameters and their optimizer state.

    Parameters
    ----------
    tensor:
        A plain tensor or a DTensor.

    Returns
    -------
    Tensor
        The DTensor's local shard, or ``tensor`` itself if it is not a DTensor.

    Examples
    --------
    >>> t = torch.ones(2)
    >>> local_tensor(t) is t
    True
    """
    if is_dtensor(tensor):
        return tensor._local_tensor  # type: ignore[attr-defined]  # to_local() adds an autograd view
    return tensor


def check_model(model: Any) -> None:
    """Refuse models that DASH cannot shrink correctly (FSDP1's flattened parameters).

    Parameters
    ----------
    model:
        The model given to the wrapper; ``None`` or anything that is not a
        :class:`torch.nn.Module` is accepted without a check.

    Raises
    ------
    NotImplementedError
        For a model wrapped by ``torch.distributed.fsdp.FullyShardedDataParallel`` (FSDP1),
        whose optimizer parameters are flat buffers with no Conv/Linear structure.

    Examples
    --------
    >>> check_model(torch.nn.Linear(2, 2))   # anything else passes
    """
    if model is None or not isinstance(model, torch.nn.Module):
        return
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:
        return
    if any(isinstance(m, FullyShardedDataParallel) for m in model.modules()):
        raise NotImplementedError(
            "DASH does not support FSDP1 (FullyShardedDataParallel): its flattened parameters have no "
            "Conv/Linear units. Shard the model with FSDP2, torch.distributed.fsdp.fully_shard, instead"
        )


def sharded_dash_factors(
    weight: Tensor, direction: Tensor, dims: Sequence[int], lambd: float, eps: float = F.COSINE_EPS
) -> Tensor:
    r"""DASH factors for a plain tensor or a DTensor shard, identical on every rank.

    For a plain tensor this is :func:`torch_dash_optim.functional.dash_factors`. For a
    DTensor the result is a plain float32 tensor that broadcasts against the *local* shard
    (:func:`local_tensor`). Units within the local shard are computed locally; for units that
    span a sharded dimension, the dot product and squared norms are summed over the shards
    first (one all-reduce), with the same :math:`\epsilon` clamping as the plain formula.

    Parameters
    ----------
    weight:
        The parameter (tensor or DTensor).
    direction:
        The gathered direction, of the same kind and shape.
    dims:
        Dimensions reduced per unit (see :func:`torch_dash_optim.functional.unit_dims`).
    lambd:
        The floor of the factors.
    eps:
        Lower clamp of each norm.

    Returns
    -------
    Tensor
        float32 factors in ``[lambd, 1]``.

    Raises
    ------
    NotImplementedError
        For a DTensor with a ``Partial`` placement (not produced by ``fully_shard``).

    Examples
    --------
    >>> w = torch.tensor([[1.0, 1.0], [1.0, -1.0]])
    >>> sharded_dash_factors(w, torch.tensor([[2.0, 2.0], [-1.0, 1.0]]), (1,), 0.3).flatten().tolist()
    [1.0, 0.30000001192092896]
    """
    if not is_dtensor(weight):
        return F.dash_factors(weight, direction, dims, lambd, eps)
    from torch.distributed.tensor import Replicate, Shard

    dims = tuple(d % weight.ndim for d in dims)
    if not is_dtensor(direction):
        raise TypeError(
            "the parameter is a DTensor but its gathered direction is not; both must come from FSDP2"
        )
    if tuple(direction.placements) != tuple(weight.placements):
        direction = direction.redistribute(weight.device_mesh, weight.placements)
    reduce_over: list[int] = []  # mesh dimensions whose shards split a unit
    for mesh_dim, placement in enumerate(weight.placements):
        if isinstance(placement, Shard):
            if placement.dim % weight.ndim in dims:
                reduce_over.append(mesh_dim)
        elif not isinstance(placement, Replicate):
            raise NotImplementedError(
                f"DASH supports DTensor parameters placed by Shard/Replicate (FSDP2, HSDP); got {placement!r}"
            )
    w, d = local_tensor(weight), local_tensor(direction)
    if not reduce_over:
        return F.dash_factors(w, d, dims, lambd, eps)
    w32, d32 = w.float(), d.float()
    sums = torch.stack(
        [
            (w32 * d32).sum(dim=dims, keepdim=True),
            (w32 * w32).sum(dim=dims, keepdim=True),
            (d32 * d32).sum(dim=dims, keepdim=True),
        ]
    )
    import torch.distributed as dist

    for mesh_dim in reduce_over:
        dist.all_reduce(sums, group=weight.device_mesh.get_group(mesh_dim))
    dot, nw2, nd2 = sums.unbind(0)
    cos = dot / (nw2.sqrt().clamp_min(eps) * nd2.sqrt().clamp_min(eps))
    return cos.clamp(min=lambd, max=1.0)


def sharded_dash_factors_many(
    weights: Sequence[Tensor],
    directions: Sequence[Tensor],
    dims: Sequence[Sequence[int]],
    lambds: Sequence[float],
    eps: float = F.COSINE_EPS,
    *,
    groups: Sequence[int] | None = None,
) -> list[Tensor]:
    """DASH factors of many tensors, plain tensors and DTensor shards alike, identical on every rank.

    Plain tensors go through one grouped call of
    :func:`~torch_dash_optim.functional.dash_factors_many`; DTensor shards through
    :func:`sharded_dash_factors`, one by one (each may need its all-reduce). A DTensor cut into
    blocks of dim 0 (``groups > 1``: attention's stacked q/k/v bias) is small; its factors are
    computed on the full tensor and handed to each rank for its shard.

    Parameters
    ----------
    weights, directions:
        The parameters and their gathered directions (same kinds and shapes, pairwise).
    dims:
        Dimensions reduced per unit, one tuple per tensor (see
        :func:`torch_dash_optim.functional.unit_dims`).
    lambds:
        The floor of each tensor's factors.
    eps:
        Lower clamp of each norm.
    groups:
        Per tensor, the number of equal blocks of dim 0 that no unit spans (see
        :func:`~torch_dash_optim.functional.cosine_per_unit`); ``None``: 1 for every tensor.

    Returns
    -------
    list of Tensor
        float32 factors in ``[lambd, 1]``, in the order of ``weights``; each broadcasts against
        its tensor (a DTensor's local shard).

    Examples
    --------
    >>> w = [torch.tensor([[1.0, 1.0], [1.0, -1.0]]), torch.tensor([2.0, 0.0])]
    >>> d = [torch.tensor([[2.0, 2.0], [-1.0, 1.0]]), torch.tensor([1.0, 1.0])]
    >>> [f.flatten().tolist() for f in sharded_dash_factors_many(w, d, [(1,), (0,)], [0.3, 0.3])]
    [[1.0, 0.30000001192092896], [0.7071067690849304]]
    """
    n = len(weights)
    if len(directions) != n or len(dims) != n:
        raise ValueError(f"got {n} weights, {len(directions)} directions and {len(dims)} dims")
    if len(lambds) != n:
        raise ValueError(f"got {n} weights but {len(lambds)} lambds")
    groups = [1] * n if groups is None else list(groups)
    if len(groups) != n:
        raise ValueError(f"got {n} weights but {len(groups)} groups")
    out: list[Tensor | None] = [None] * n
    plain = [i for i, w in enumerate(weights) if not is_dtensor(w)]
    grouped = F.dash_factors_many(
        [weights[i] for i in plain],
        [directions[i] for i in plain],
        [dims[i] for i in plain],
        [lambds[i] for i in plain],
        eps,
        groups=[groups[i] for i in plain],
    )
    for i, f in zip(plain, grouped, strict=True):
        out[i] = f
    for i in range(n):
        if out[i] is None and groups[i] > 1:
            out[i] = _block_factors(weights[i], directions[i], dims[i], lambds[i], eps, groups[i])
        elif out[i] is None:
            out[i] = sharded_dash_factors(weights[i], directions[i], dims[i], lambds[i], eps)
    return out  # type: ignore[return-value]


def _block_factors(
    weight: Any, direction: Any, dims: Sequence[int], lambd: float, eps: float, groups: int
) -> Tensor:
    """Factors of a DTensor cut into blocks of dim 0, computed on the full tensor, for the local shard."""
    from torch.distributed.tensor import DTensor, Replicate

    full = F.dash_factors(weight.full_tensor(), direction.full_tensor(), dims, lambd, eps, groups=groups)
    mesh = weight.device_mesh
    replicated = DTensor.from_local(full, mesh, [Replicate()] * mesh.ndim, run_check=False)
    return replicated.redistribute(mesh, weight.placements).to_local()
