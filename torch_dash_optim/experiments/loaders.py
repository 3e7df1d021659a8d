"""Chunking a training set and iterating over batches of it.

Datasets built from tensors (``TensorDataset`` and ``Subset``/``ConcatDataset`` of them) are
batched by slicing tensors kept on the device, which is much faster than a
:class:`~torch.utils.data.DataLoader` for small models; any other dataset goes through a
``DataLoader``. Both give the same batches for the same generator.

**Balanced batches.** A training epoch never ends in a batch far below the batch size: an
epoch of ``n`` examples at batch size ``B`` takes ``k = ceil(n / B)`` steps, as a plain
loader does, but its batches hold ``n // k`` or ``n // k + 1`` examples (:func:`batch_sizes`).
So every batch holds at least ``B // 2`` examples (when ``n >= B``) and at most ``B``. A
plain loader would end the epoch in ``n mod B`` examples: 1800 examples at ``B = 128`` end
in a batch of 8, whose BatchNorm statistics are noise. Merging that remainder into a larger
batch would exceed ``B``, and dropping it (``drop_last``) would leave examples out of the
epoch whose train accuracy ends the experiment; balancing does neither, and keeps the steps
per epoch of the plain loader.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler, Subset, TensorDataset

from ..gather import move_to_device

__all__ = ["TensorLoader", "batch_sizes", "make_loader", "split_chunks", "tensors_of"]

#: A function that turns one batch of a dataset, as collated, into ``(inputs, targets)``.
SplitBatch = Callable[[Any], tuple[Any, Any]]


def split_chunks(dataset: Dataset, num_chunks: int, generator: torch.Generator) -> list[Subset]:
    """Split ``dataset`` at random into ``num_chunks`` equal chunks (the remainder is dropped).

    Parameters
    ----------
    dataset:
        The training set to split.
    num_chunks:
        How many chunks to make.
    generator:
        The random generator of the split (seed it for a reproducible split).

    Returns
    -------
    list of torch.utils.data.Subset
        The chunks, each of ``len(dataset) // num_chunks`` examples.

    Raises
    ------
    ValueError
        If the data set has fewer examples than ``num_chunks``.

    Examples
    --------
    >>> data = torch.utils.data.TensorDataset(torch.arange(10.0))
    >>> [len(c) for c in split_chunks(data, 3, torch.Generator().manual_seed(0))]
    [3, 3, 3]
    """
    n = len(dataset)  # type: ignore[arg-type]
    size = n // num_chunks
    if size < 1:
        raise ValueError(
            f"the training set has {n} examples, too few for {num_chunks} chunks; "
            "lower --chunks or use more data"
        )
    perm = torch.randperm(n, generator=generator).tolist()
    return [Subset(dataset, perm[i * size : (i + 1) * size]) for i in range(num_chunks)]


def batch_sizes(n: int, batch_size: int, balanced: bool = True) -> list[int]:
    """The sizes of the batches of one epoch over ``n`` examples.

    Parameters
    ----------
    n:
        Examples in the epoch.
    batch_size:
        The batch size ``B``.
    balanced:
        ``True``: ``ceil(n / B)`` batches of ``n // k`` or ``n // k + 1`` examples, the larger
        ones first (the rule of the training loader; see the module). ``False``: batches of
        ``B`` and a last one of the remainder, as a plain ``DataLoader``.

    Returns
    -------
    list of int
        The batch sizes, in order; they sum to ``n`` (empty for ``n = 0``).

    Examples
    --------
    >>> batch_sizes(1800, 128, balanced=False)[-2:]
    [128, 8]
    >>> sorted(set(batch_sizes(1800, 128)))
    [120]
    >>> batch_sizes(10, 4)
    [4, 3, 3]
    """
    if n <= 0:
        return []
    k = -(-n // batch_size)
    if not balanced:
        return [batch_size] * (k - 1) + [n - batch_size * (k - 1)]
    small, extra = divmod(n, k)
    return [small + 1] * extra + [small] * (k - extra)


def _bounds(sizes: Sequence[int]) -> list[tuple[int, int]]:
    """``(start, stop)`` of each batch of ``sizes``, in order."""
    out, start = [], 0
    for size in sizes:
        out.append((start, start + size))
        start += size
    return out


def _indices(dataset: Dataset) -> tuple[TensorDataset, list[int]] | None:
    """The ``TensorDataset`` under ``dataset`` and its indices into it, or ``None`` if there is none."""
    if isinstance(dataset, TensorDataset):
        return dataset, list(range(len(dataset)))
    if isinstance(dataset, Subset):
        inner = _indices(dataset.dataset)
        if inner is None:
            return None
        return inner[0], [inner[1][i] for i in dataset.indices]
    if isinstance(dataset, ConcatDataset):
        parts = [_indices(d) for d in dataset.datasets]
        if not parts or any(p is None for p in parts) or len({id(p[0]) for p in parts}) != 1:  # type: ignore[index]
            return None
        return parts[0][0], [i for p in parts for i in p[1]]  # type: ignore[index]
    return None


def tensors_of(dataset: Dataset) -> tuple[Tensor, ...] | None:
    """Return the tensors of a tensor-backed dataset, in its order, or ``None`` if it is not one.

    Parameters
    ----------
    dataset:
        A :class:`~torch.utils.data.TensorDataset`, or subsets and concatenations of one
        single ``TensorDataset``, nested to any depth.

    Returns
    -------
    tuple of Tensor or None
        The tensors, indexed in the dataset's order, or ``None`` for any other dataset.

    Examples
    --------
    >>> data = torch.utils.data.TensorDataset(torch.arange(6.0), torch.arange(6))
    >>> part = torch.utils.data.ConcatDataset([torch.utils.data.Subset(data, [4, 1]),
    ...                                        torch.utils.data.Subset(data, [0])])
    >>> tensors_of(part)[1]
    tensor([4, 1, 0])
    """
    found = _indices(dataset)
    if found is None:
        return None
    base, idx = found
    index = torch.tensor(idx, dtype=torch.long)
    return tuple(t[index] for t in base.tensors)


class TensorLoader:
    """Batches of tensors kept on one device, optionally reshuffled every epoch.

    With ``balanced=True`` the batches follow :func:`batch_sizes`'s balanced rule; with
    ``split_batch`` each batch (a tuple of the tensors' slices) is passed through it.

    Examples
    --------
    >>> loader = TensorLoader((torch.arange(5.0), torch.arange(5)), batch_size=2)
    >>> [y.tolist() for _, y in loader]
    [[0, 1], [2, 3], [4]]
    >>> [y.tolist() for _, y in TensorLoader((torch.arange(5.0), torch.arange(5)), 2, balanced=True)]
    [[0, 1], [2, 3], [4]]
    >>> [len(y) for _, y in TensorLoader((torch.arange(7.0), torch.arange(7)), 4, balanced=True)]
    [4, 3]
    >>> len(loader)
    3
    """

    def __init__(
        self,
        tensors: Sequence[Tensor],
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        balanced: bool = False,
        split_batch: SplitBatch | None = None,
    ) -> None:
        self.tensors = tuple(tensors)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.balanced = balanced
        self.split_batch = split_batch

    def __len__(self) -> int:
        return len(batch_sizes(len(self.tensors[0]), self.batch_size, self.balanced))

    def __iter__(self) -> Iterator[Any]:
        n = len(self.tensors[0])
        bounds = _bounds(batch_sizes(n, self.batch_size, self.balanced))
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(self.tensors[0].device)
            batches = (tuple(t[order[a:b]] for t in self.tensors) for a, b in bounds)
        else:
            batches = (tuple(t[a:b] for t in self.tensors) for a, b in bounds)
        for batch in batches:
            yield batch if self.split_batch is None else self.split_batch(batch)


class _BatchSampler(Sampler[list[int]]):
    """Index batches of :func:`batch_sizes`, over ``torch.randperm(n, generator)`` when shuffled."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, generator: torch.Generator | None, balanced: bool):
        self.n, self.shuffle, self.generator = n, shuffle, generator
        self.bounds = _bounds(batch_sizes(n, batch_size, balanced))

    def __len__(self) -> int:
        return len(self.bounds)

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(self.n, generator=self.generator).tolist() if self.shuffle else range(self.n)
        for a, b in self.bounds:
            yield list(order[a:b])


class _DeviceLoader:
    """A DataLoader whose batches go through ``split_batch`` (if any) and to a device."""

    def __init__(self, loader: DataLoader, device: torch.device, split_batch: SplitBatch | None = None) -> None:
        self.loader, self.device, self.split_batch = loader, device, split_batch

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            if self.split_batch is not None:
                batch = self.split_batch(batch)
            yield tuple(move_to_device(part, self.device) for part in batch)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    workers: int = 0,
    balanced: bool = False,
    split_batch: SplitBatch | None = None,
) -> TensorLoader | _DeviceLoader:
    """Return an iterable of ``(inputs, targets)`` batches on ``device``, with ``len()``.

    Parameters
    ----------
    dataset:
        A map-style dataset of ``(input, target)`` pairs, or of any items that ``split_batch``
        turns into such pairs once collated (dicts, say).
    batch_size, shuffle, generator:
        As for :class:`~torch.utils.data.DataLoader` (the generator drives the shuffle:
        ``torch.randperm(len(dataset), generator=generator)`` each epoch).
    device:
        Where the batches go.
    workers:
        ``num_workers`` of the DataLoader (unused for tensor-backed datasets).
    balanced:
        Balanced batches (:func:`batch_sizes`): what the protocol's training loader uses.
        ``False``: batches of ``batch_size`` and the remainder.
    split_batch:
        Turns each batch, as collated (a tuple of tensors for a tensor-backed dataset), into
        ``(inputs, targets)``; ``None``: the batch is that pair already.

    Examples
    --------
    >>> data = torch.utils.data.TensorDataset(torch.randn(10, 3), torch.arange(10))
    >>> len(make_loader(data, 4))
    3
    >>> [len(y) for _, y in make_loader(data, 4, balanced=True)]
    [4, 3, 3]
    """
    device = torch.device(device)
    tensors = tensors_of(dataset)
    if tensors is not None:
        return TensorLoader([t.to(device) for t in tensors], batch_size, shuffle, generator, balanced, split_batch)
    sampler = _BatchSampler(len(dataset), batch_size, shuffle, generator, balanced)  # type: ignore[arg-type]
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers, pin_memory=device.type == "cuda")
    return _DeviceLoader(loader, device, split_batch)
