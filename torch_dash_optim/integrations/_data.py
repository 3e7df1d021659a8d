"""Loaders over all the training data seen so far, for the framework callbacks."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

__all__ = [
    "Mapped",
    "check_pass_options",
    "check_reiterable",
    "dataset_size",
    "pass_batch_size",
    "replay_loader",
    "with_pass_transform",
]

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


def check_pass_options(batch_size: Any, pass_loader: Any, pass_transform: Any = None) -> None:
    """Check the callbacks' ``batch_size`` (a positive int, ``"chunk"`` or None), ``pass_loader`` and
    ``pass_transform``."""
    if (
        batch_size is not None
        and batch_size != CHUNK
        and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1)
    ):
        raise ValueError(f"batch_size must be a positive int, 'chunk' or None; got {batch_size!r}")
    if pass_loader is not None and not callable(pass_loader):
        raise TypeError(
            f"pass_loader must be callable as pass_loader(dataset) -> batches; got {type(pass_loader).__name__}"
        )
    if pass_loader is not None and batch_size is not None:
        raise ValueError("give batch_size or pass_loader, not both (pass_loader builds the whole loader)")
    if pass_transform is not None and not callable(pass_transform):
        raise TypeError(
            "pass_transform must be callable, the transform the gradient pass reads the training dataset with "
            f"(e.g. the evaluation transform, without augmentation); got {type(pass_transform).__name__}"
        )


def with_pass_transform(dataset: Any, transform: Callable[..., Any], *, who: str) -> Any:
    """A copy of ``dataset`` that reads its examples through ``transform``; ``dataset`` is left unchanged.

    The copy is shallow (the data is shared). Replaced: the ``transform`` attribute of a
    torchvision-style dataset (and the ``transforms`` that torchvision builds from it), inside
    :class:`~torch.utils.data.ConcatDataset` and :class:`~torch.utils.data.Subset` too; a
    Hugging Face ``datasets.Dataset`` gets ``dataset.with_transform(transform)``. Raises a
    TypeError naming the part of ``dataset`` that has no transform to replace.
    """
    if isinstance(dataset, ConcatDataset):
        out = copy.copy(dataset)
        out.datasets = [with_pass_transform(d, transform, who=who) for d in dataset.datasets]
        return out
    if isinstance(dataset, Subset):
        out = copy.copy(dataset)
        out.dataset = with_pass_transform(dataset.dataset, transform, who=who)
        return out
    with_transform = getattr(dataset, "with_transform", None)
    if callable(with_transform) and not hasattr(dataset, "transform"):  # Hugging Face datasets
        return with_transform(transform)
    if hasattr(dataset, "transform"):
        out = copy.copy(dataset)
        try:
            out.transform = transform
        except AttributeError as err:
            raise TypeError(
                f"{who}(pass_transform=...) cannot replace the transform of the training dataset "
                f"({type(dataset).__name__}): its 'transform' attribute cannot be set ({err}); build the pass's "
                "loader yourself with pass_loader=fn, fn(dataset) -> batches"
            ) from err
        both = getattr(dataset, "transforms", None)
        if type(both).__name__ == "StandardTransform" and hasattr(both, "target_transform"):
            # torchvision's VisionDataset keeps transform and target_transform together in .transforms too
            out.transforms = type(both)(transform, both.target_transform)
        return out
    raise TypeError(
        f"{who}(pass_transform=...) found no transform to replace in the training dataset: "
        f"{type(dataset).__name__} has no 'transform' attribute (torchvision-style datasets, also inside a "
        "ConcatDataset or Subset) and no with_transform method (Hugging Face datasets). Build the pass's loader "
        "yourself with pass_loader=fn, fn(dataset) -> batches over the data without augmentation"
    )


def check_reiterable(loader: Any, who: str) -> None:
    """Refuse a one-shot iterator (a generator) as the loader of a pass that diagnostics read first."""
    if isinstance(loader, Iterator):
        raise TypeError(
            f"{who}(diagnostics=...) reads the pass's loader twice (the diagnostics, then DASH's pass), but the "
            f"loader is a one-shot {type(loader).__name__}; give a loader that can be iterated again (a list of "
            "batches or a DataLoader)"
        )


def pass_batch_size(batch_size: int | str | None, grown_by: int | None, default: int | None) -> int | None:
    """The pass's batch size: an int as given; ``"chunk"``: the new examples (``grown_by``) or else ``default``;
    None: ``default``."""
    if batch_size == CHUNK:
        return grown_by if grown_by else default
    return batch_size if batch_size is not None else default  # type: ignore[return-value]


def replay_loader(
    loader: Any,
    *,
    batch_size: int | None,
    num_workers: int = 0,
    collate_fn: Any = None,
    who: str,
    dataset: Dataset | None = None,
) -> DataLoader:
    """A ``shuffle=False`` loader over ``loader``'s whole dataset (or ``dataset``, a copy of it read with
    another transform), in index order (appended data last)."""
    if dataset is None:
        dataset = getattr(loader, "dataset", None)
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
