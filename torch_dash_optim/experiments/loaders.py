"""Chunking a training set and iterating over batches of it.

Datasets built from tensors (``TensorDataset`` and ``Subset``/``ConcatDataset`` of them) are
batched by slicing tensors kept on the device, which is much faster than a
:class:`~torch.utils.data.DataLoader` for small models; any other dataset goes through a
``DataLoader``. Both give the same batches for the same generator.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset, TensorDataset

__all__ = ["TensorLoader", "make_loader", "split_chunks", "tensors_of"]


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

    Examples
    --------
    >>> loader = TensorLoader((torch.arange(5.0), torch.arange(5)), batch_size=2)
    >>> [y.tolist() for _, y in loader]
    [[0, 1], [2, 3], [4]]
    >>> len(loader)
    3
    """

    def __init__(
        self,
        tensors: Sequence[Tensor],
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        self.tensors = tuple(tensors)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator

    def __len__(self) -> int:
        return -(-len(self.tensors[0]) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        n = len(self.tensors[0])
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(self.tensors[0].device)
            for start in range(0, n, self.batch_size):
                index = order[start : start + self.batch_size]
                yield tuple(t[index] for t in self.tensors)
        else:
            for start in range(0, n, self.batch_size):
                yield tuple(t[start : start + self.batch_size] for t in self.tensors)


class _DeviceLoader:
    """A DataLoader whose batches are moved to a device."""

    def __init__(self, loader: DataLoader, device: torch.device) -> None:
        self.loader, self.device = loader, device

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            yield tuple(t.to(self.device, non_blocking=True) for t in batch)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    workers: int = 0,
) -> TensorLoader | _DeviceLoader:
    """Return an iterable of ``(inputs, targets)`` batches on ``device``, with ``len()``.

    Parameters
    ----------
    dataset:
        Any map-style dataset of ``(input, target)`` pairs.
    batch_size, shuffle, generator:
        As for :class:`~torch.utils.data.DataLoader` (the generator drives the shuffle).
    device:
        Where the batches go.
    workers:
        ``num_workers`` of the DataLoader (unused for tensor-backed datasets).

    Examples
    --------
    >>> data = torch.utils.data.TensorDataset(torch.randn(10, 3), torch.arange(10))
    >>> len(make_loader(data, 4))
    3
    """
    device = torch.device(device)
    tensors = tensors_of(dataset)
    if tensors is not None:
        return TensorLoader([t.to(device) for t in tensors], batch_size, shuffle, generator)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    return _DeviceLoader(loader, device)
