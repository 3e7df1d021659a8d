r"""Opt-in skipping of the batches that the EMA can no longer see (``tol=``).

With the EMA of :mod:`torch_dash_optim.gather`, batch :math:`i` of :math:`n` enters the
direction with weight :math:`\alpha(1-\alpha)^{n-i}`, so the first :math:`k` batches weigh
together :math:`(1-\alpha)^{n-k} - (1-\alpha)^{n} < (1-\alpha)^{n-k}`. ``tol`` keeps the
last :math:`m` batches, the fewest with :math:`(1-\alpha)^{m} \le` ``tol``, and skips the
forward and backward of the :math:`k = n - m` before them. The EMA then starts from zero at
batch :math:`k+1`, and on every unit :math:`u` (kernel slice, row or bias) it differs from the
exact :math:`G` by

.. math::

    \lVert G_u - \tilde G_u \rVert \le \bigl((1-\alpha)^{m} - (1-\alpha)^{n}\bigr)
    \max_{i \le k} \lVert \nabla_u L(B_i) \rVert < \mathrm{tol}\,\max_{i \le k}
    \lVert \nabla_u L(B_i) \rVert,

so a factor :math:`\mathrm{clamp}(\cos(w_u, G_u), \lambda, 1)` moves by at most
:math:`\min\bigl(1 - \lambda,\; 2\,\mathrm{tol}\,\max_{i \le k}\lVert\nabla_u L(B_i)\rVert /
\lVert G_u \rVert\bigr)` (the cosine is 1-Lipschitz in the unit direction, and a unit
direction moves by at most twice the relative change of its vector). In a warm start the
skipped batches are the oldest, best-fitted data, whose gradients are the smallest, so the
factor change is usually far below ``tol``.

Which batches must be loaded to be skipped:

* a :class:`~torch.utils.data.DataLoader` over a map-style dataset (the usual case): **none**.
  An equivalent loader (same dataset, ``collate_fn``, workers, pinning, generator, ...) is
  built whose batch sampler drops the first :math:`k` index lists, so skipped samples are
  never read, transformed or collated, and its random draws (base seed, shuffling) are the
  ones the original loader would make;
* a :class:`~collections.abc.Sequence` (list, tuple of batches): none; it is indexed from
  :math:`k` on;
* any other iterable with ``len()`` (a ``DataLoader`` over an ``IterableDataset`` with
  ``__len__``, a ``DataLoader`` subclass, a custom loader): the skipped batches **are**
  produced by the loader and dropped unseen; only their forward and backward are saved.

An iterable without a usable ``len()`` (a generator, a ``DataLoader`` over an
``IterableDataset`` without ``__len__``) cannot be trimmed: ``tol > 0`` raises a
:class:`TypeError` before anything is touched. If a loader yields fewer batches than its
``len()`` promised, the skipped batches may weigh more than ``tol``: the pass raises a
:class:`ValueError` at the end of the loader, and nothing is changed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

from torch.utils.data import DataLoader, IterableDataset

from ._checks import check_real

__all__ = ["check_tol", "kept_batches", "skippable", "trim_loader"]


def check_tol(tol: Any, average: str = "ema") -> float:
    """Check ``tol`` (a float in ``[0, 1)``; only with ``average="ema"``) and return it as a float.

    Parameters
    ----------
    tol:
        The tolerance to check.
    average:
        The wrapper's ``average``; a non-zero ``tol`` needs ``"ema"``.

    Returns
    -------
    float
        ``tol`` as a float.

    Raises
    ------
    TypeError
        If ``tol`` is not a real number (``bool`` included); NumPy scalars are accepted.
    ValueError
        If ``tol`` is outside ``[0, 1)``, or is non-zero with ``average="mean"``.

    Examples
    --------
    >>> check_tol(1e-4)
    0.0001
    >>> check_tol(1e-4, average="mean")
    Traceback (most recent call last):
    ...
    ValueError: tol=0.0001 needs average='ema' (every batch weighs the same under average='mean'); pass tol=0
    """
    value = check_real("tol", tol, "[0, 1)")
    if not math.isfinite(value) or not 0.0 <= value < 1.0:
        raise ValueError(f"tol={tol!r} is outside [0, 1); use 0 for the exact EMA or e.g. tol=1e-4")
    if value and average != "ema":
        raise ValueError(
            f"tol={value} needs average='ema' (every batch weighs the same under average={average!r}); pass tol=0"
        )
    return value


def kept_batches(alpha: float, tol: float) -> int:
    r"""The fewest last batches :math:`m \ge 1` whose predecessors weigh at most ``tol`` together.

    That is the smallest :math:`m` with :math:`(1-\alpha)^m \le` ``tol``.

    ``0`` means "keep every batch" (``tol == 0``).

    Parameters
    ----------
    alpha:
        The EMA weight of each new batch, in ``(0, 1]``.
    tol:
        The total weight the skipped batches may have; ``0`` (or less) keeps every batch.

    Returns
    -------
    int
        The number of last batches to keep: at least 1, or 0 for "keep every batch".

    Examples
    --------
    >>> kept_batches(0.3, 1e-4)   # 0.7**26 < 1e-4 <= 0.7**25
    26
    >>> kept_batches(0.3, 0.0), kept_batches(1.0, 1e-4)
    (0, 1)
    """
    if tol <= 0.0:
        return 0
    if alpha >= 1.0:
        return 1
    # log1p, not log(1 - alpha): for a tiny alpha, 1 - alpha rounds to 1 and its log to 0.
    log_decay = math.log1p(-alpha)

    def weight(m: int) -> float:  # (1 - alpha) ** m, without rounding 1 - alpha first
        return math.exp(m * log_decay)

    keep = max(1, math.ceil(math.log(tol) / log_decay - 1e-12))
    while keep > 1 and weight(keep - 1) <= tol:  # guard the float rounding of the logarithms
        keep -= 1
    while weight(keep) > tol:
        keep += 1
    return keep


def skippable(num_batches: int, alpha: float, tol: float) -> int:
    r"""How many leading batches of ``num_batches`` weigh at most ``tol`` together in the EMA.

    ``num_batches - m`` with :math:`m` from :func:`kept_batches` (never negative; at least one
    batch is kept).

    Parameters
    ----------
    num_batches:
        The number of batches in the pass.
    alpha:
        The EMA weight of each new batch, in ``(0, 1]``.
    tol:
        The total weight the skipped batches may have; ``0`` (or less) skips none.

    Returns
    -------
    int
        The number of leading batches that may be skipped, between 0 and
        ``num_batches - 1``.

    Examples
    --------
    >>> skippable(100, 0.3, 1e-4)   # the last 26 batches are kept
    74
    >>> skippable(10, 0.3, 0.0), skippable(20, 0.3, 1e-4)
    (0, 0)
    """
    keep = kept_batches(alpha, tol)
    if keep == 0 or num_batches <= keep:
        return 0
    return num_batches - keep


def trim_loader(loader: Iterable[Any], *, alpha: float, average: str, tol: float) -> tuple[Iterable[Any], int]:
    """The batches to gather over under ``tol``, and how many leading batches are skipped.

    Parameters
    ----------
    loader:
        The loader given to :meth:`~torch_dash_optim.DASHWrapper.on_new_data`.
    alpha, average:
        The EMA's weight and kind (nothing is skipped unless ``average == "ema"``).
    tol:
        The tolerance; ``0`` returns ``loader`` itself, untouched and unwrapped.

    Returns
    -------
    (iterable, int)
        The batches to gather over, and the number of leading batches skipped.

    Raises
    ------
    TypeError
        If ``tol > 0`` and ``len(loader)`` is not available.

    Examples
    --------
    >>> batches, skipped = trim_loader(list(range(30)), alpha=0.3, average="ema", tol=1e-4)
    >>> skipped, list(batches)[:2]
    (4, [4, 5])
    >>> trim_loader(iter([1]), alpha=0.3, average="ema", tol=0.0)[1]
    0
    """
    if tol <= 0.0 or average != "ema":
        return loader, 0
    n = _length(loader, tol)
    skip = skippable(n, alpha, tol)
    if skip == 0:
        return loader, 0
    if _rebuildable(loader):
        tail: Iterable[Any] = _rebuild(loader, skip)  # type: ignore[arg-type]
    elif isinstance(loader, Sequence):
        tail = (loader[i] for i in range(skip, n))
    else:
        tail = islice(loader, skip, None)  # the skipped batches are produced, then dropped
    return _Checked(tail, n, skip, tol), skip


def _length(loader: Iterable[Any], tol: float) -> int:
    hint = (
        "Pass tol=0 (the exact EMA), or a loader with len(): a DataLoader over a map-style dataset, a list of batches"
    )
    try:
        n = len(loader)  # type: ignore[arg-type]
    except TypeError as err:  # no __len__, or a DataLoader over an IterableDataset without one
        raise TypeError(
            f"tol={tol} needs len(loader) to know which batches to skip, but the "
            f"{type(loader).__name__} has none ({err}). {hint}"
        ) from None
    if not isinstance(n, int) or n < 0:
        raise TypeError(f"tol={tol} needs len(loader) to be a non-negative int; got {n!r}. {hint}")
    return n


def _rebuildable(loader: Any) -> bool:
    """A plain DataLoader over a map-style dataset, whose index sampler can drop batches unread."""
    return type(loader) is DataLoader and not isinstance(loader.dataset, IterableDataset)


class _SkipFirst:
    """A (batch) sampler without its first ``skip`` items; iterated lazily, like the original."""

    def __init__(self, sampler: Any, skip: int) -> None:
        self.sampler, self.skip = sampler, skip

    def __iter__(self) -> Iterator[Any]:
        return islice(iter(self.sampler), self.skip, None)

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)


def _rebuild(loader: DataLoader, skip: int) -> DataLoader:
    """A DataLoader equal to ``loader`` but for its first ``skip`` batches, which it never loads."""
    common: dict[str, Any] = {
        "num_workers": loader.num_workers,
        "collate_fn": loader.collate_fn,
        "pin_memory": loader.pin_memory,
        "timeout": loader.timeout,
        "worker_init_fn": loader.worker_init_fn,
        "multiprocessing_context": loader.multiprocessing_context,
        "generator": loader.generator,
        "prefetch_factor": loader.prefetch_factor,
        "persistent_workers": False,  # iterated once, then dropped
        "pin_memory_device": loader.pin_memory_device,
    }
    if hasattr(loader, "in_order"):
        common["in_order"] = loader.in_order
    if loader.batch_sampler is not None:
        return DataLoader(loader.dataset, batch_sampler=_SkipFirst(loader.batch_sampler, skip), **common)
    # batch_size=None: the sampler yields one index per "batch"
    return DataLoader(loader.dataset, batch_size=None, sampler=_SkipFirst(loader.sampler, skip), **common)


class _Checked:
    """Yield the kept batches; at the end, fail if fewer came than ``len()`` promised."""

    def __init__(self, batches: Iterable[Any], total: int, skip: int, tol: float) -> None:
        self.batches, self.total, self.skip, self.tol = batches, total, skip, tol

    def __iter__(self) -> Iterator[Any]:
        seen = 0
        for batch in self.batches:
            seen += 1
            yield batch
        if seen < self.total - self.skip:
            raise ValueError(
                f"tol={self.tol}: the loader's len() is {self.total}, so its first {self.skip} batches "
                f"were skipped, but only {seen} came after them instead of {self.total - self.skip}; "
                "the skipped batches may weigh more than tol. Fix the loader's __len__ or pass tol=0"
            )

    def __len__(self) -> int:
        return self.total - self.skip
