r"""Plasticity diagnostics: dormant units, weight and feature ranks, weight norms, DASH's cosines.

:func:`diagnose` takes one forward pass over a loader and measures, for every layer DASH can
shrink (the modules that own a weight :func:`~torch_dash_optim.selection.select` picks):

**Dormant units** (ReDo; Sokar et al., ICML 2023). With :math:`h_i` the :math:`i`-th feature and
the expectation over the samples of the pass (and over the spatial positions of a Conv input),

.. math::

    s_i = \frac{\mathbb{E}\,\lvert h_i\rvert}{\frac{1}{H}\sum_{j=1}^{H} \mathbb{E}\,\lvert h_j\rvert},
    \qquad h_i \text{ is } \tau\text{-dormant if } s_i \le \tau .

:math:`h` is each layer's *input*: the features the layer reads, that is the post-activation
outputs of the units before it, after whatever norm, activation and pooling the model applies
(ReLU, GELU, BatchNorm then ReLU). Measured there, the score needs no knowledge of the
activation function and sees exactly what a unit passes on; ReDo's own code scores
post-activation outputs too. The share of dormant features is reported under the name of the
layer that reads them (``"dormant/layer1.0.conv2"`` covers the units of ``layer1.0.conv1``, after
``bn1`` and ReLU). A layer whose input is the batch itself, or a view of it (a flatten), reads
the data's features, not units: it gets no dormant share. :math:`\tau = 0` (the default) counts
the features that are exactly zero on every sample (dead ReLUs); ReDo's experiments recycle
units with :math:`\tau = 0.025` and :math:`\tau = 0.1`.

**Weight ranks.** Each weight as a matrix ``W = weight.reshape(weight.shape[0], -1)`` (a Conv
weight as ``(out, in * kernel)``): its *effective rank* (Roy and Vetterli, 2007) and its *stable
rank* :math:`\lVert W\rVert_F^2 / \lVert W\rVert_2^2`, both in :math:`[1, \min(m, n)]` for a
non-zero matrix (:func:`~torch_dash_optim.ranks.effective_rank` and
:func:`~torch_dash_optim.ranks.stable_rank`; :mod:`torch_dash_optim.ranks` gives the formulas).

**Feature rank** (Kumar et al., ICLR 2021) of the penultimate features :math:`\Phi` (one row per
sample, or per token or position): :math:`\operatorname{srank}_\delta(\Phi)`, the fewest singular
values that hold :math:`1 - \delta` of their sum, :math:`\delta = 0.01`
(:func:`~torch_dash_optim.ranks.feature_rank`).
The penultimate features are the input of the last ``nn.Linear`` to run in each forward (the
classifier or the language-model head), or of the module named by ``features=``. Their first
``max_feature_rows`` rows in the loader's order (default 2048) enter the rank, which therefore
cannot exceed that cap. Their effective rank is reported too (the loss-of-plasticity papers'
measure of the representation).

**Weight norms**: the Frobenius norm of every shrinkable parameter (weights and biases), and
the global norm over them all.

**DASH's cosines** (with a loss): per unit, :math:`\cos(w_u, G_u)` with :math:`G` the direction
of the gradient pass that :meth:`~torch_dash_optim.DASHWrapper.on_new_data` takes (the same
units, EMA and eval mode), so the factors a call would apply are
``cosines[name].clamp(lambd, 1)``. The figures are then measured in that pass's forward: one
pass in all.

Nothing is changed: the pass runs in eval mode with hooks that are always removed, and module
modes, buffers and gradients are put back exactly, on success and on failure alike (the
preservation of the gradient pass, :mod:`torch_dash_optim.gather`).

The rank functions are defined in :mod:`torch_dash_optim.ranks` and remain importable from this
module, their former path (``from torch_dash_optim.diagnostics import effective_rank`` works).
"""

from __future__ import annotations

import fnmatch
import itertools
import math
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ._checks import check_alpha, check_choice, check_real
from ._interrupts import deferred_interrupts
from .functional import GRANULARITIES, cosine_per_unit
from .gather import _preserved, gather_direction, move_to_device
from .names import qualified_modules
from .ranks import (
    _as_matrix,
    _check_delta,
    _erank,
    _singular_values,
    _srank,
    _srank_delta,
    effective_rank,
    feature_rank,
    stable_rank,
)
from .selection import Target, select

__all__ = [
    "CosineStats",
    "Diagnostics",
    "FeatureDiagnostics",
    "LayerDiagnostics",
    "diagnose",
    "dormant_scores",
    # defined in .ranks; still importable from here, their path until the split
    "effective_rank",
    "feature_rank",
    "stable_rank",
]

#: Name given to the model itself when it is the layer (a bare ``nn.Linear``).
_ROOT = "(model)"


# -- the dormancy score ---------------------------------------------------------------------------
def dormant_scores(mean_abs: Tensor) -> Tensor:
    r"""ReDo's scores :math:`s_i = \mathbb{E}\lvert h_i\rvert \,/\, \operatorname{mean}_j \mathbb{E}\lvert h_j\rvert`.

    Parameters
    ----------
    mean_abs:
        :math:`\mathbb{E}\lvert h_i\rvert` for each feature of one layer (1-D).

    Returns
    -------
    Tensor
        The scores (mean 1); all zero when every feature is zero. A feature is
        :math:`\tau`-dormant when its score is at most :math:`\tau`.

    Examples
    --------
    >>> dormant_scores(torch.tensor([0.0, 1.0, 3.0])).tolist()
    [0.0, 0.75, 2.25]
    """
    mean = mean_abs.mean()
    return mean_abs / mean if mean > 0 else torch.zeros_like(mean_abs)


# -- the result ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class CosineStats:
    """The distribution of DASH's per-unit cosines of one parameter.

    Attributes
    ----------
    units:
        Number of units.
    mean, min, q10, median, q90, max:
        Its mean, extremes and 10/50/90 % quantiles.
    negative:
        Share of units with a negative cosine (pointing against the negative gradient).

    Examples
    --------
    >>> CosineStats.of(torch.tensor([-0.5, 0.0, 0.5, 1.0])).negative
    0.25
    """

    units: int
    mean: float
    min: float
    q10: float
    median: float
    q90: float
    max: float
    negative: float

    @classmethod
    def of(cls, cosines: Tensor) -> CosineStats:
        """Summarise a tensor of cosines (any shape, one per unit)."""
        c = cosines.detach().flatten().float()
        q = torch.quantile(c, torch.tensor([0.1, 0.5, 0.9], dtype=c.dtype, device=c.device))
        row = torch.stack([c.mean(), c.min(), q[0], q[1], q[2], c.max(), (c < 0).float().mean()])
        mean, low, q10, median, q90, high, negative = row.tolist()  # one host sync
        return cls(c.numel(), mean, low, q10, median, q90, high, negative)


@dataclass(frozen=True)
class LayerDiagnostics:
    """The figures of one layer (one shrinkable weight and the module that owns it).

    Attributes
    ----------
    name:
        The module's qualified name (the key of its dormant share); ``"(model)"`` when the
        model is the layer itself.
    weight:
        The weight's qualified name (the key of its ranks and norm).
    shape:
        The weight's shape.
    in_features:
        Number of features the layer reads (its input channels); ``None`` if it never ran or
        reads the data itself.
    dormant:
        Share of those features that are :math:`\\tau`-dormant; ``None`` if the layer never
        ran or reads the data itself; NaN if they hold inf or NaN.
    effective_rank, stable_rank:
        Of the weight as a ``(shape[0], -1)`` matrix.
    norm:
        Frobenius norm of the weight.

    Examples
    --------
    >>> LayerDiagnostics("fc", "fc.weight", (10, 64), 64, 0.25, 9.1, 3.2, 4.0).dormant
    0.25
    """

    name: str
    weight: str
    shape: tuple[int, ...]
    in_features: int | None
    dormant: float | None
    effective_rank: float
    stable_rank: float
    norm: float


@dataclass(frozen=True)
class FeatureDiagnostics:
    """Ranks of the penultimate features.

    Attributes
    ----------
    module:
        The module whose input they are.
    rows, dim:
        Rows (samples, tokens or positions) and features that entered the ranks.
    rank:
        :math:`\\operatorname{srank}_\\delta` (see :func:`~torch_dash_optim.ranks.feature_rank`); NaN if the features
        hold inf or NaN.
    effective_rank:
        Their effective rank (see :func:`~torch_dash_optim.ranks.effective_rank`).
    delta:
        The :math:`\\delta` used.

    Examples
    --------
    >>> FeatureDiagnostics("fc", 2048, 512, 87, 140.2, 0.01).rank
    87
    """

    module: str
    rows: int
    dim: int
    rank: int | float
    effective_rank: float
    delta: float


@dataclass
class Diagnostics:
    """What :func:`diagnose` measured: print it for a table, log :meth:`to_dict`.

    Attributes
    ----------
    layers:
        One :class:`LayerDiagnostics` per shrinkable weight, in the model's order.
    norms:
        Frobenius norm of every shrinkable parameter (weights and biases), by name.
    features:
        Ranks of the penultimate features; ``None`` if no ``nn.Linear`` (or the module named by
        ``features=``) ran.
    cosines:
        Per shrinkable parameter, DASH's per-unit cosines (float32, shaped like the factors of
        :attr:`DASHReport.factors <torch_dash_optim.DASHReport.factors>`); empty without a
        loss. Not part of :meth:`to_dict`, which holds their :class:`CosineStats`.
    num_batches:
        Batches in the pass.
    tau:
        The dormancy threshold used.
    unit_cosines:
        The cosines one per unit (flat) of the parameters cut into blocks (an attention
        ``in_proj_bias``: its q, k, v thirds), whose ``cosines`` repeat each block's value to
        broadcast; the statistics use these.

    Examples
    --------
    >>> d = Diagnostics([LayerDiagnostics("fc", "fc.weight", (2, 4), 4, 0.25, 1.9, 1.2, 3.0)],
    ...                 {"fc.weight": 3.0, "fc.bias": 4.0}, None)
    >>> d.to_dict()["dormant/fc"], d.to_dict()["norm"]
    (0.25, 5.0)
    """

    layers: list[LayerDiagnostics]
    norms: dict[str, float]
    features: FeatureDiagnostics | None
    cosines: dict[str, Tensor] = field(default_factory=dict, repr=False, compare=False)
    num_batches: int = 0
    tau: float = 0.0
    unit_cosines: dict[str, Tensor] = field(default_factory=dict, repr=False, compare=False)

    @property
    def dormant(self) -> float | None:
        """Share of dormant features over every layer that has a dormant share (features weighted alike)."""
        measured = [(r.dormant, r.in_features) for r in self._modules() if r.dormant is not None]
        total = sum(n for _, n in measured if n)
        return sum(d * n for d, n in measured if n) / total if total else None

    @property
    def norm(self) -> float:
        """Global Frobenius norm of every shrinkable parameter."""
        return math.sqrt(sum(n * n for n in self.norms.values()))

    def cosine_stats(self) -> dict[str, CosineStats]:
        """:class:`CosineStats` of each parameter with cosines."""
        return {name: CosineStats.of(self.unit_cosines.get(name, c)) for name, c in self.cosines.items()}

    def _modules(self) -> list[LayerDiagnostics]:
        seen: dict[str, LayerDiagnostics] = {}
        for r in self.layers:
            seen.setdefault(r.name, r)
        return list(seen.values())

    def to_dict(self) -> dict[str, float]:
        """A flat dict to log (TensorBoard, W&B, Lightning's ``log_dict``).

        Returns
        -------
        dict of str to float
            ``"dormant/<layer>"``, ``"effective_rank/<weight>"``, ``"stable_rank/<weight>"``,
            ``"norm/<parameter>"``, with cosines ``"cosine_<stat>/<parameter>"`` (stat one of
            mean, min, q10, median, q90, max, negative); and the model-level ``"dormant"``,
            ``"norm"``, ``"effective_rank_ratio"`` and ``"stable_rank_ratio"`` (the means over
            the weights of rank / ``min(shape)``), ``"feature_rank"``,
            ``"feature_effective_rank"``, ``"cosine_mean"`` and ``"cosine_negative"`` (over all
            units), ``"num_batches"``. A figure that was not measured is left out.
        """
        out: dict[str, float] = {}
        for r in self._modules():
            if r.dormant is not None:
                out[f"dormant/{r.name}"] = r.dormant
        for r in self.layers:
            out[f"effective_rank/{r.weight}"] = r.effective_rank
            out[f"stable_rank/{r.weight}"] = r.stable_rank
        for name, value in self.norms.items():
            out[f"norm/{name}"] = value
        stats = self.cosine_stats()
        for name, s in stats.items():
            for key in ("mean", "min", "q10", "median", "q90", "max", "negative"):
                out[f"cosine_{key}/{name}"] = getattr(s, key)
        if self.dormant is not None:
            out["dormant"] = self.dormant
        out["norm"] = self.norm
        if self.layers:
            full = [min(r.shape[0], _cols(r.shape)) for r in self.layers]
            out["effective_rank_ratio"] = sum(r.effective_rank / n for r, n in zip(self.layers, full)) / len(full)
            out["stable_rank_ratio"] = sum(r.stable_rank / n for r, n in zip(self.layers, full)) / len(full)
        if self.features is not None:
            out["feature_rank"] = float(self.features.rank)
            out["feature_effective_rank"] = self.features.effective_rank
        if stats:
            units = sum(s.units for s in stats.values())
            out["cosine_mean"] = sum(s.mean * s.units for s in stats.values()) / units
            out["cosine_negative"] = sum(s.negative * s.units for s in stats.values()) / units
        out["num_batches"] = float(self.num_batches)
        return out

    def __str__(self) -> str:
        stats = self.cosine_stats()
        header = ["layer", "in", "dormant", "weight", "norm", "erank", "srank"]
        if stats:
            header += ["cos median", "cos<0"]
        rows = []
        for r in self.layers:
            row = [
                r.name,
                "-" if r.in_features is None else str(r.in_features),
                "-" if r.dormant is None else f"{100 * r.dormant:.1f}%",
                "x".join(map(str, r.shape)),
                f"{r.norm:.3g}",
                f"{r.effective_rank:.1f}/{min(r.shape[0], _cols(r.shape))}",
                f"{r.stable_rank:.2f}",
            ]
            if stats:
                s = stats.get(r.weight)
                row += ["-", "-"] if s is None else [f"{s.median:.3f}", f"{100 * s.negative:.1f}%"]
            rows.append(row)
        widths = [max(len(x[i]) for x in [header, *rows]) for i in range(len(header))]

        def fmt(row: list[str]) -> str:
            return "  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]).rstrip()

        rule = "  ".join("-" * w for w in widths)
        lines = [f"Plasticity diagnostics over {self.num_batches} batch(es) (tau={self.tau:g})", fmt(header), rule]
        lines += [fmt(r) for r in rows]
        lines.append(rule)
        summary = [f"weight norm {self.norm:.4g}"]
        if self.dormant is not None:
            summary.insert(0, f"dormant {100 * self.dormant:.1f}%")
        if self.features is not None:
            f = self.features
            summary.append(
                f"feature rank {f.rank} (srank, delta={f.delta:g}; effective {f.effective_rank:.1f}) of the "
                f"{f.dim} inputs of {f.module} over {f.rows} rows"
            )
        if stats:
            d = self.to_dict()
            summary.append(f"cosine mean {d['cosine_mean']:.3f}, negative {100 * d['cosine_negative']:.1f}%")
        lines += summary
        return "\n".join(lines)


def _cols(shape: tuple[int, ...]) -> int:
    return math.prod(shape[1:])


# -- the pass ------------------------------------------------------------------------------------
class _Activity:
    """Running sums of ``|h|`` per input feature of one layer (float32, in place)."""

    __slots__ = ("count", "reads_data", "total")

    def __init__(self) -> None:
        self.total: Tensor | None = None
        self.count = 0
        self.reads_data = False


def _feature_dim(module: nn.Module, x: Tensor) -> int:
    """The dimension of ``x`` that holds the features a module reads: channels for a Conv, else the last."""
    if isinstance(module, nn.modules.conv._ConvNd):
        return 1 if x.ndim == module.weight.ndim else 0
    return x.ndim - 1


#: Elements per chunk of :func:`_abs_sums` (256 KiB of float32: the temporary stays in cache).
_CHUNK = 1 << 16


def _abs_sums(x: Tensor, dim: int) -> Tensor:
    """Sum of ``|x|`` over every dimension but ``dim``, in float32.

    A large input is taken in slices along its first dimension, so that the temporary ``|x|``
    stays in cache: about twice as fast on CPU as one ``x.abs().sum(dims)``, which writes and
    reads an activation-sized temporary. (``vector_norm(x, 1)`` over the leading dims is ten
    times slower; ``abs`` into a reused buffer evicts the input.)
    """
    if x.ndim == 1:
        return x.abs().float()
    if dim == x.ndim - 1 and x.ndim > 2 and x.is_contiguous():
        x, dim = x.view(-1, x.shape[-1]), 1
    dims = [d for d in range(x.ndim) if d != dim]
    if dim == 0 or x.numel() <= 2 * _CHUNK:
        return x.abs().sum(dims, dtype=torch.float32)
    total: Tensor | None = None
    for part in x.split(max(1, _CHUNK * x.shape[0] // x.numel())):
        partial = part.abs().sum(dims, dtype=torch.float32)
        total = partial if total is None else total.add_(partial)
    assert total is not None
    return total


def _first_tensor(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Tensor | None:
    x = args[0] if args else next(iter(kwargs.values()), None)
    return x if isinstance(x, Tensor) and x.is_floating_point() else None


def _leaves(batch: Any) -> Iterator[Tensor]:
    if isinstance(batch, Tensor):
        yield batch
    elif isinstance(batch, Mapping):
        for v in batch.values():
            yield from _leaves(v)
    elif isinstance(batch, (list, tuple)):
        for v in batch:
            yield from _leaves(v)


def _storage(x: Tensor) -> int:
    try:
        return x.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # a tensor subclass without storage
        return -1


class _Recorder:
    """The forward pre-hooks of one pass and what they gather.

    The penultimate features: with ``features=`` named, that module's input at every call; else
    the input of the last ``nn.Linear`` of the first forward, found by hooking every Linear for
    that forward only (each hook overwrites one slot), then that Linear's input at every call.
    Rows are copied as they come, while they are in cache, and the hook goes once the cap is
    reached, so the rest of the pass runs without it.
    """

    def __init__(
        self, layers: dict[str, nn.Module], feature_modules: dict[str, nn.Module], named: bool, max_rows: int
    ) -> None:
        self.activity = {name: _Activity() for name in layers}
        self.layers = layers
        self.feature_modules = feature_modules
        self.feature_module: str | None = next(iter(feature_modules)) if named else None
        self.max_rows = max_rows
        self.rows: Tensor | None = None
        self.num_rows = 0
        self.last: tuple[str, Tensor] | None = None
        self.data: set[int] = set()
        self.handles: list[Any] = []
        self.feature_handles: dict[str, Any] = {}
        self.memo: tuple[weakref.ref[Tensor], tuple[int, int], Tensor] | None = None

    def install(self) -> None:
        for name, module in self.layers.items():
            self.handles.append(module.register_forward_pre_hook(self._activity_hook(name), with_kwargs=True))
        for name, module in self.feature_modules.items():
            hook = self._feature_hook(name)
            self.feature_handles[name] = module.register_forward_pre_hook(hook, with_kwargs=True)

    def remove(self) -> None:
        with deferred_interrupts():
            for h in [*self.handles, *self.feature_handles.values()]:
                h.remove()
            self.handles.clear()
            self.feature_handles.clear()
            self.last = self.memo = None

    def _activity_hook(self, name: str) -> Callable[..., None]:
        stat = self.activity[name]

        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            x = _first_tensor(args, kwargs)
            if x is None or x.ndim == 0:
                return
            if _storage(x) in self.data:
                stat.reads_data = True
                return
            dim = _feature_dim(module, x)
            sums = self._magnitudes(x, dim)
            if stat.total is None:
                stat.total = sums.clone()
            elif stat.total.shape == sums.shape:
                stat.total.add_(sums)
            else:
                raise ValueError(
                    f"layer {name} read {sums.numel()} features in one call and {stat.total.numel()} in another, "
                    "so its dormant share is undefined; leave it out with layers=[...]"
                )
            stat.count += x.numel() // max(1, x.shape[dim])

        return hook

    def _magnitudes(self, x: Tensor, dim: int) -> Tensor:
        """Sum of ``|x|`` over every dimension but ``dim``, in float32; computed once for an input
        that several layers read in a row (q, k and v projections)."""
        key = (dim, x._version)
        memo = self.memo
        if memo is not None and memo[0]() is x and memo[1] == key:
            return memo[2]
        with torch.no_grad():
            sums = _abs_sums(x.detach(), dim)
        self.memo = (weakref.ref(x), key, sums)  # a weak reference: the input is not kept alive
        return sums

    def _feature_hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            x = _first_tensor(args, kwargs)
            if x is None or x.ndim == 0:
                return
            if self.feature_module is None:
                self.last = (name, x.detach())  # the first forward: which Linear runs last?
            else:
                self._take(module, x.detach())

        return hook

    def _take(self, module: nn.Module, x: Tensor) -> None:
        """Copy the first rows of ``x`` (features last), up to the cap; then drop the hook."""
        left = self.max_rows - self.num_rows
        if left > 0:
            x = x.movedim(_feature_dim(module, x), -1) if x.ndim > 1 else x.unsqueeze(0)
            rows = x.reshape(-1, x.shape[-1])[:left]
            if self.rows is not None and rows.shape[1] != self.rows.shape[1]:
                raise ValueError(
                    f"the penultimate features changed width from {self.rows.shape[1]} to {rows.shape[1]} within "
                    "the pass; name the module whose input they are with features=..."
                )
            need = self.num_rows + rows.shape[0]
            if self.rows is None or need > self.rows.shape[0]:
                # One buffer, grown by doubling up to the cap: rows copied batch by batch into fresh
                # tensors would take the blocks that the forward frees, and slow it down.
                grown = torch.empty(
                    min(
                        self.max_rows,
                        max(need, 2 * (0 if self.rows is None else self.rows.shape[0]), 8 * rows.shape[0]),
                    ),
                    rows.shape[1],
                    dtype=torch.float32,
                    device=rows.device,
                )
                if self.rows is not None:
                    grown[: self.num_rows].copy_(self.rows[: self.num_rows])
                self.rows = grown
            with torch.no_grad():
                self.rows[self.num_rows : self.num_rows + rows.shape[0]].copy_(rows)
            self.num_rows += rows.shape[0]
        if self.num_rows >= self.max_rows and self.feature_module in self.feature_handles:
            self.feature_handles.pop(self.feature_module).remove()

    def end_of_forward(self) -> None:
        """After the first forward: keep the last Linear's input and unhook the other Linears."""
        if self.last is None:
            return
        name, x = self.last
        self.last = None
        self.feature_module = name
        for other in [n for n in self.feature_handles if n != name]:
            self.feature_handles.pop(other).remove()
        self._take(self.feature_modules[name], x)

    def batches(self, loader: Iterable[Any], device: torch.device, max_batches: int | None) -> Iterator[Any]:
        """The loader's batches on ``device``; the features of the first forward are settled before the second."""
        source = loader if max_batches is None else itertools.islice(loader, max_batches)
        for batch in source:
            self.end_of_forward()
            self.memo = None
            batch = move_to_device(batch, device)
            self.data = {_storage(t) for t in _leaves(batch)}
            yield batch
        self.end_of_forward()
        self.data, self.memo = set(), None


# -- the entry point -----------------------------------------------------------------------------
def diagnose(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    tau: float = 0.0,
    loss_fn: Callable[[Any, Any], Tensor] | None = None,
    batch_loss: Callable[[nn.Module, Any], Tensor] | None = None,
    cosines: bool | None = None,
    layers: Iterable[str] | None = None,
    features: str | None = None,
    max_batches: int | None = None,
    max_feature_rows: int = 2048,
    delta: float = 0.01,
    alpha: float = 0.3,
    granularity: str = "kernel",
) -> Diagnostics:
    r"""Measure the plasticity of ``model`` over ``loader`` in one forward pass (see the module).

    Parameters
    ----------
    model:
        The model. Its layers are the modules that own a weight DASH would shrink (a trainable
        Conv/Linear weight: :func:`torch_dash_optim.selection.select`).
    loader:
        Iterable of batches, visited once in order; batches are moved to the model's device.
    tau:
        ReDo's dormancy threshold :math:`\tau \ge 0`: a feature is dormant when its score is at
        most ``tau``. 0 (default) counts the features that are exactly zero on every sample;
        ReDo's experiments use 0.025 and 0.1.
    loss_fn, batch_loss:
        A loss, as for :class:`~torch_dash_optim.DASHWrapper`: ``loss_fn(model(inputs),
        targets)`` for ``(inputs, targets)`` batches, or ``batch_loss(model, batch)`` for any
        batch. Needed for the cosines. Without either, the forward is ``model(inputs)`` for a
        tuple or list ``(inputs, ...)``, ``model(**batch)`` for a mapping and ``model(batch)``
        for a tensor.
    cosines:
        Measure DASH's per-unit cosines (a forward and backward pass instead of a forward
        pass). ``None`` (default): when a loss is given.
    layers:
        Glob patterns (``fnmatch``: ``*``, ``?``, ``[...]``) over the layers' module names,
        e.g. ``["layer4.*", "fc"]``; ``None``: every layer. A pattern that matches no layer is
        an error. Cosines and norms cover the parameters of these layers.
    features:
        Name of the module whose input holds the penultimate features; ``None`` (default): the
        last ``nn.Linear`` to run in each forward.
    max_batches:
        Stop after this many batches.
    max_feature_rows:
        Rows (samples, tokens or positions) of the penultimate features kept for their ranks:
        the first ones, in the loader's order.
    delta:
        The :math:`\delta` of the feature rank, in ``(0, 1)``.
    alpha, granularity:
        The EMA weight and the units of the cosines, as for
        :class:`~torch_dash_optim.DASHWrapper` (its defaults).

    Returns
    -------
    Diagnostics
        Per-layer figures; ``str()`` gives a table, :meth:`~Diagnostics.to_dict` a flat dict.

    Raises
    ------
    ValueError
        For an empty loader, a pattern or ``features`` name that matches no module, or a bad
        setting.
    TypeError
        For a batch the default forward cannot call the model with (pass ``batch_loss``).

    Examples
    --------
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> loader = [(torch.randn(16, 4), torch.randint(0, 3, (16,))) for _ in range(2)]
    >>> diag = diagnose(model, loader)
    >>> [k for k in diag.to_dict() if k.startswith(("dormant/", "effective_rank/"))]  # 0 reads the data
    ['dormant/2', 'effective_rank/0.weight', 'effective_rank/2.weight']
    >>> diag.features.module, diag.features.rows, diag.features.dim
    ('2', 32, 8)
    >>> with_cos = diagnose(model, loader, loss_fn=torch.nn.CrossEntropyLoss())
    >>> sorted(with_cos.cosines)
    ['0.bias', '0.weight', '2.bias', '2.weight']
    """
    tau = _check_tau(tau)
    _check_delta(delta)
    alpha = check_alpha(alpha)
    _check_count("max_feature_rows", max_feature_rows)
    if max_batches is not None:
        _check_count("max_batches", max_batches)
    check_choice("granularity", granularity, GRANULARITIES)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if not isinstance(loader, Iterable):
        raise TypeError(f"loader must be an iterable of batches; got {type(loader).__name__}")
    if loss_fn is not None and batch_loss is not None:
        raise ValueError("give loss_fn (criterion(outputs, targets)) or batch_loss (fn(model, batch)), not both")
    has_loss = loss_fn is not None or batch_loss is not None
    if cosines is None:
        cosines = has_loss
    if cosines and not has_loss:
        raise ValueError(
            "cosines=True needs a loss for the gradient pass: pass loss_fn=criterion (called as "
            "criterion(model(inputs), targets)) or batch_loss=fn (called as fn(model, batch))"
        )
    plan = _plan(model, layers, features, granularity)
    recorder, directions, num_batches = _run(
        plan,
        model,
        loader,
        cosines,
        _loss(model, loss_fn, batch_loss) if cosines else None,
        batch_loss,
        alpha,
        max_batches,
        max_feature_rows,
    )
    return _summarise(plan, recorder, directions, num_batches, tau, delta)


@dataclass
class _Plan:
    """What one call measures: the shrinkable parameters, their modules, the hooked modules."""

    targets: list[Target]
    owners: dict[int, tuple[str, nn.Module]]
    layers: dict[str, nn.Module]
    feature_modules: dict[str, nn.Module]
    named: bool
    params: list[Tensor]
    device: torch.device


def _plan(model: nn.Module, layers: Iterable[str] | None, features: str | None, granularity: str) -> _Plan:
    targets, owners = _targets(model, granularity)
    chosen = _choose(owners, layers)
    targets = [t for t in targets if owners[id(t.param)][0] in chosen]
    feature_modules, named = _feature_modules(model, features)
    params = list(model.parameters())
    device = params[0].device if params else torch.device("cpu")
    return _Plan(targets, owners, _layer_modules(targets, owners), feature_modules, named, params, device)


def _run(
    plan: _Plan,
    model: nn.Module,
    loader: Iterable[Any],
    cosines: bool,
    compute_loss: Callable[[Any], Tensor] | None,
    batch_loss: Callable[[nn.Module, Any], Any] | None,
    alpha: float,
    max_batches: int | None,
    max_rows: int,
) -> tuple[_Recorder, list[Tensor | None], int]:
    """The one pass, with the hooks in place: a forward pass, or with cosines DASH's gradient pass."""
    recorder = _Recorder(plan.layers, plan.feature_modules, plan.named, max_rows)
    recorder.install()
    try:
        batches = recorder.batches(loader, plan.device, max_batches)
        if not cosines:
            return recorder, [], _forward_pass(model, batches, batch_loss)
        assert compute_loss is not None
        result = gather_direction(
            [t.param for t in plan.targets],
            batches,
            compute_loss,
            alpha=alpha,
            model=model,
            trainable=[p for p in plan.params if p.requires_grad],
            device=plan.device,
            names=[t.name for t in plan.targets],
        )
        return recorder, result.directions, result.num_batches
    finally:
        recorder.remove()


def _summarise(
    plan: _Plan, recorder: _Recorder, directions: list[Tensor | None], num_batches: int, tau: float, delta: float
) -> Diagnostics:
    """Everything after the pass: the spectra (one batched ``eigvalsh`` per size), scores and cosines."""
    targets, owners = plan.targets, plan.owners
    weights = [t for t in targets if t.param.ndim >= 2]
    with torch.no_grad():
        norm_list = [torch.linalg.vector_norm(t.param.detach().float()) for t in targets]
        norms = dict(zip([t.name for t in targets], torch.stack(norm_list).tolist() if targets else []))
        matrices = [_as_matrix(t.param) for t in weights]
        features = recorder.rows[: recorder.num_rows] if recorder.rows is not None else None
        spectra = _singular_values(matrices + ([features] if features is not None else []))
    layers = []
    for t, sigma in zip(weights, spectra, strict=False):
        module = owners[id(t.param)][0]
        stat = recorder.activity.get(module)
        n_features, dormant = None, None
        if stat is not None and stat.total is not None and not stat.reads_data:
            n_features = stat.total.numel()
            scores = dormant_scores(stat.total / max(1, stat.count))
            finite = bool(scores.isfinite().all())
            dormant = float((scores <= tau).float().mean()) if finite else math.nan
        layers.append(
            LayerDiagnostics(
                module,
                t.name,
                tuple(t.param.shape),
                n_features,
                dormant,
                _erank(sigma),
                _srank(sigma),
                norms[t.name],
            )
        )
    feature_stats = None
    if features is not None:
        sigma = spectra[-1]
        feature_stats = FeatureDiagnostics(
            recorder.feature_module or "",
            features.shape[0],
            features.shape[1],
            _srank_delta(sigma, delta),
            _erank(sigma),
            delta,
        )
    cos: dict[str, Tensor] = {}
    units: dict[str, Tensor] = {}
    if directions:
        with torch.no_grad():
            for t, d in zip(targets, directions, strict=True):
                if d is not None:
                    cos[t.name] = cosine_per_unit(t.param.detach(), d, t.dims, groups=t.groups)
                    if t.groups > 1:
                        units[t.name] = t.per_unit(cos[t.name])
    return Diagnostics(layers, norms, feature_stats, cos, num_batches, tau, units)


def _targets(model: nn.Module, granularity: str) -> tuple[list[Target], dict[int, tuple[str, nn.Module]]]:
    """The shrinkable parameters (DASH's selection over every parameter) and, by id, their owning module."""
    for name, p in model.named_parameters():
        if isinstance(p, nn.parameter.UninitializedParameter):
            raise ValueError(
                f"parameter {name} is a lazy parameter that is not yet initialised (a Lazy* module); run one "
                "forward pass (e.g. model(sample_batch)) before diagnose"
            )
    selection = select([{"params": list(model.parameters())}], model, lambd=0.0, granularity=granularity)
    module_of: dict[int, nn.Module] = {}
    for module in model.modules():
        for p in module._parameters.values():
            if p is not None:
                module_of.setdefault(id(p), module)
    owners = {id(t.param): (t.name.rpartition(".")[0] or _ROOT, module_of[id(t.param)]) for t in selection.targets}
    return list(selection.targets), owners


def _layer_modules(targets: list[Target], owners: dict[int, tuple[str, nn.Module]]) -> dict[str, nn.Module]:
    out: dict[str, nn.Module] = {}
    for t in targets:
        if t.param.ndim >= 2:
            name, module = owners[id(t.param)]
            out.setdefault(name, module)
    return out


def _choose(owners: dict[int, tuple[str, nn.Module]], patterns: Iterable[str] | None) -> set[str]:
    names = list(dict.fromkeys(name for name, _ in owners.values()))
    if patterns is None:
        return set(names)
    if isinstance(patterns, str):
        patterns = [patterns]
    chosen: set[str] = set()
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise TypeError(f"layers must be glob patterns (str); got {pattern!r}")
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
            raise ValueError(f"the layer pattern {pattern!r} matches no layer; the layers are: {shown}")
        chosen.update(hits)
    return chosen


def _feature_modules(model: nn.Module, features: str | None) -> tuple[dict[str, nn.Module], bool]:
    if features is None:
        return {(n or _ROOT): m for n, m in qualified_modules(model).items() if isinstance(m, nn.Linear)}, False
    full = dict(model.named_modules())
    for name, module in [*qualified_modules(model).items(), *full.items()]:
        if (name or _ROOT) == features or name == features:
            return {features: module}, True
    raise ValueError(
        f"features={features!r} names no module of the model; give a module name as in "
        "model.named_modules() (e.g. 'fc' or 'head'), or None for the input of the last nn.Linear"
    )


def _forward_pass(model: nn.Module, batches: Iterable[Any], batch_loss: Callable[[nn.Module, Any], Any] | None) -> int:
    """Forward every batch in eval mode, without gradients; modes and buffers restored after."""
    count = 0
    with _preserved(model, [], train_mode=False), torch.no_grad():
        for batch in batches:
            if batch_loss is not None:
                batch_loss(model, batch)
            else:
                _call(model, batch)
            count += 1
    if count == 0:
        raise ValueError("the loader yielded no batch; pass a loader over the data to diagnose")
    return count


def _call(model: nn.Module, batch: Any) -> Any:
    if isinstance(batch, Tensor):
        return model(batch)
    if isinstance(batch, Mapping):
        return model(**batch)
    if isinstance(batch, (tuple, list)) and batch:
        return model(batch[0])
    raise TypeError(
        f"diagnose cannot call the model on a batch of type {type(batch).__name__}; pass batch_loss=fn, "
        "called as fn(model, batch)"
    )


def _loss(
    model: nn.Module,
    loss_fn: Callable[[Any, Any], Tensor] | None,
    batch_loss: Callable[[nn.Module, Any], Tensor] | None,
) -> Callable[[Any], Tensor]:
    if batch_loss is not None:
        return lambda batch: batch_loss(model, batch)
    criterion = loss_fn
    assert criterion is not None

    def compute(batch: Any) -> Tensor:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise TypeError(
                f"loss_fn expects batches of (inputs, targets), but the loader yielded a {type(batch).__name__}; "
                "for other batches pass batch_loss=fn, called as fn(model, batch) -> loss"
            )
        inputs, targets = batch
        return criterion(model(inputs), targets)

    return compute


def _check_tau(tau: Any) -> float:
    value = check_real("tau", tau, "[0, inf)")
    if not 0.0 <= value < math.inf:
        raise ValueError(f"tau={tau!r} must be a finite number >= 0 (ReDo uses 0, 0.025 or 0.1)")
    return value


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive int")
