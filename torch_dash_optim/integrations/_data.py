"""Loaders over all the training data seen so far, for the framework callbacks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from torch.utils.data import DataLoader, Dataset

__all__ = ["Mapped", "check_pass_options", "dataset_size", "pass_batch_size", "replay_loader"]

#: ``batch_size="chunk"``: one batch per chunk of new data, as in the authors' code.
CHUNK = "chunk"


def dataset_size(loader: Any) -> int | None:
    """Size of the map-style dataset behind ``loader``; None if it has none or no ``len``."""
    dataset = getattr(loader, "dataset", None)
    if dataset is None:
        return None
    try:
        return len(dataset)
    except TypeError:
        return None


def check_pass_options(batch_size: Any, pass_loader: Any) -> None:
    """Check the callbacks' ``batch_size`` (a positive int, ``"chunk"`` or None) and ``pass_loader``."""
    if batch_size is not None and batch_size != CHUNK and (
        not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive int, 'chunk' or None; got {batch_size!r}")
    if pass_loader is not None and not callable(pass_loader):
        raise TypeError(
            f"pass_loader must be callable as pass_loader(dataset) -> batches; got {type(pass_loader).__name__}"
        )
    if pass_loader is not None and batch_size is not None:
        raise ValueError("give batch_size or pass_loader, not both (pass_loader builds the whole loader)")


def pass_batch_size(batch_size: int | str | None, grown_by: int | None, default: int | None) -> int | None:
    """The pass's batch size: an int as given; ``"chunk"``: the new examples (``grown_by``) or else ``default``;
    None: ``default``."""
    if batch_size == CHUNK:
        return grown_by if grown_by else default
    return batch_size if batch_size is not None else default  # type: ignore[return-value]


def replay_loader(
    loader: Any, *, batch_size: int | None, num_workers: int = 0, collate_fn: Any = None, who: str
) -> DataLoader:
    """A ``shuffle=False`` loader over ``loader``'s whole dataset, in index order (appended data last)."""
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


class Mapped:
    """``fn`` applied to every batch of ``loader``; has ``len`` when the loader has one."""

    def __init__(self, loader: Iterable[Any], fn: Callable[[Any], Any]) -> None:
        self.loader = loader
        self.fn = fn

    def __iter__(self) -> Iterator[Any]:
        return (self.fn(batch) for batch in self.loader)

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]


class ConvertedCollate:
    """A collate function followed by ``convert`` (picklable, for worker processes)."""

    def __init__(self, collate: Callable[[list[Any]], Any] | None, convert: Callable[[Any], Any]) -> None:
        self.collate = collate
        self.convert = convert

    def __call__(self, samples: list[Any]) -> Any:
        from torch.utils.data import default_collate

        return self.convert((self.collate or default_collate)(samples))
