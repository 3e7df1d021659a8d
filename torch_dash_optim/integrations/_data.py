"""Loaders over all the training data seen so far, for the framework callbacks."""

from __future__ import annotations

from typing import Any

from torch.utils.data import DataLoader, Dataset

__all__ = ["dataset_size", "replay_loader"]


def dataset_size(loader: Any) -> int | None:
    """Size of the map-style dataset behind ``loader``; None if it has none or no ``len``."""
    dataset = getattr(loader, "dataset", None)
    if dataset is None:
        return None
    try:
        return len(dataset)
    except TypeError:
        return None


def replay_loader(
    loader: Any, *, batch_size: int | None, num_workers: int = 0, collate_fn: Any = None, who: str
) -> DataLoader:
    """A ``shuffle=False`` loader over ``loader``'s whole dataset, in the dataset's order.

    The dataset's order is its index order: a dataset that grows by appending (a
    ``ConcatDataset``, a growing index list) puts the new data last, as DASH wants.
    """
    dataset: Dataset | None = getattr(loader, "dataset", None)
    if dataset is None or dataset_size(loader) is None:
        raise TypeError(
            f"{who} cannot build a loader over the training data: the training loader has no map-style "
            f"dataset with a length (got {type(loader).__name__}); pass loader=... explicitly"
        )
    size = batch_size if batch_size is not None else getattr(loader, "batch_size", None)
    if size is None:
        raise ValueError(
            f"{who} cannot tell the batch size of the training loader (it uses a batch sampler); pass batch_size=..."
        )
    collate = collate_fn if collate_fn is not None else getattr(loader, "collate_fn", None)
    return DataLoader(dataset, batch_size=size, shuffle=False, num_workers=num_workers, collate_fn=collate)
