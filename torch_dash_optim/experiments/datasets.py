"""The data sets: ``features`` and MNIST-1D generated locally, the paper's image data sets from a folder.

Nothing is ever downloaded. ``features`` is drawn from the DASH paper's data model (see
:mod:`~torch_dash_optim.experiments.features`). MNIST-1D comes from the ``mnist1d`` package's ``make_dataset``
(generated from templates shipped with it). CIFAR-10/100 and SVHN are read by torchvision
from ``--data-dir`` with ``download=False`` and kept as tensors; Tiny-ImageNet is read as
ImageFolder trees. torchvision is an optional extra: ``pip install -e ".[vision]"`` in a clone.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from .._extras import install_hint
from .features import FeaturesData, FeatureSpec, make_features

__all__ = ["DATASETS", "GENERATED_DATASETS", "DataSplit", "dataset_setup", "features", "load_dataset", "mnist1d"]

#: Data set names accepted by :func:`load_dataset`.
DATASETS: tuple[str, ...] = ("features", "mnist1d", "cifar10", "cifar100", "svhn", "tiny-imagenet")
#: The data sets generated on the spot, which need no ``--data-dir``.
GENERATED_DATASETS: tuple[str, ...] = ("features", "mnist1d")

# Per-channel mean and std used to normalise the image data sets.
_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    "tiny-imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


@dataclass
class DataSplit:
    """A training set, a test set and what a model needs to know about them.

    Examples
    --------
    >>> data = DataSplit(TensorDataset(torch.zeros(4, 3)), TensorDataset(torch.zeros(2, 3)), (3,), 2)
    >>> data.input_shape, data.num_classes
    ((3,), 2)

    ``patch_dim`` is the patch length of a ``features`` input (what ``patchcnn`` reads per
    kernel), ``None`` for the other data sets.
    """

    train: Dataset
    test: Dataset
    input_shape: tuple[int, ...]
    num_classes: int
    patch_dim: int | None = None


def features(spec: FeatureSpec | None = None) -> DataSplit:
    """Draw the ``features`` data set (the DASH paper's data model) as a :class:`DataSplit`.

    Parameters
    ----------
    spec:
        The generator's settings (default: :class:`~.features.FeatureSpec`'s, those of the
        default run).

    Returns
    -------
    DataSplit
        Training and test sets of ``patches * patch_dim``-value signals, ``patch_dim`` set.

    Examples
    --------
    >>> data = features(FeatureSpec(num_train=40, num_test=10))
    >>> len(data.train), data.input_shape, data.num_classes, data.patch_dim
    (40, (1024,), 10, 128)
    """
    spec = spec or FeatureSpec()
    drawn = _features_cached(spec)
    return DataSplit(drawn.train, drawn.test, (spec.input_length,), spec.classes, spec.patch_dim)


@functools.lru_cache(maxsize=2)
def _features_cached(spec: FeatureSpec) -> FeaturesData:
    return make_features(spec)


def dataset_setup(name: str) -> dict[str, Any]:
    """Return what describes a generated data set beyond its name (saved in ``config.json``).

    Parameters
    ----------
    name:
        A data set name (see :data:`DATASETS`).

    Returns
    -------
    dict
        For ``features``: ``{"features": <the FeatureSpec's fields>}``; ``{}`` for the others.

    Examples
    --------
    >>> dataset_setup("features")["features"]["rare"]
    3
    >>> dataset_setup("mnist1d")
    {}
    """
    if name == "features":
        return {"features": asdict(FeatureSpec())}
    return {}


def mnist1d(num_train: int = 4000, num_test: int = 1000, seed: int = 42) -> DataSplit:
    """Generate MNIST-1D (Greydanus, 2020) locally: 40-dim signals of 10 classes.

    The inputs are standardised with the training set's mean and std.

    Parameters
    ----------
    num_train, num_test:
        Sizes of the two sets (4000 and 1000 is the standard MNIST-1D).
    seed:
        The generator's seed (42 is the standard data set).

    Returns
    -------
    DataSplit
        The standardised training and test sets (40-dim inputs, 10 classes).

    Examples
    --------
    >>> data = mnist1d(num_train=80, num_test=20)
    >>> len(data.train), len(data.test), data.input_shape, data.num_classes
    (80, 20, (40,), 10)
    """
    x, y, x_test, y_test = _mnist1d_tensors(num_train, num_test, seed)
    mean, std = x.mean(), x.std()
    return DataSplit(
        TensorDataset((x - mean) / std, y),
        TensorDataset((x_test - mean) / std, y_test),
        (int(x.shape[1]),),
        10,
    )


@functools.lru_cache(maxsize=4)
def _mnist1d_tensors(num_train: int, num_test: int, seed: int) -> tuple[torch.Tensor, ...]:
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as err:
        raise ImportError(
            f'MNIST-1D needs the mnist1d package, from the "experiments" extra: {install_hint("experiments")}'
        ) from err
    args = get_dataset_args()
    args.num_samples = num_train + num_test
    args.train_split = num_train / (num_train + num_test)
    args.seed = seed
    data = make_dataset(args)  # generated from the package's templates; never downloads
    return (
        torch.as_tensor(data["x"], dtype=torch.float32),
        torch.as_tensor(data["y"], dtype=torch.long),
        torch.as_tensor(data["x_test"], dtype=torch.float32),
        torch.as_tensor(data["y_test"], dtype=torch.long),
    )


def _torchvision() -> Any:
    try:
        import torchvision
    except ImportError as err:
        raise ImportError(
            f'the image data sets need torchvision, from the "vision" extra: {install_hint("vision")}'
        ) from err
    return torchvision


def _as_tensors(images: Any, labels: Any, name: str, channels_last: bool) -> TensorDataset:
    x = torch.as_tensor(images)
    if channels_last:
        x = x.permute(0, 3, 1, 2)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in _STATS[name])
    x = (x.float() / 255 - mean) / std
    return TensorDataset(x.contiguous(), torch.as_tensor(labels, dtype=torch.long))


def _vision_tensors(name: str, root: Path) -> DataSplit:
    datasets = _torchvision().datasets
    try:
        if name == "svhn":
            train = datasets.SVHN(str(root), split="train", download=False)
            test = datasets.SVHN(str(root), split="test", download=False)
            pairs = [(d.data, d.labels, False) for d in (train, test)]
        else:
            cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
            train, test = (
                cls(str(root), train=True, download=False),
                cls(str(root), train=False, download=False),
            )
            pairs = [(d.data, d.targets, True) for d in (train, test)]
    except RuntimeError as err:
        expected = {
            "cifar10": "cifar-10-batches-py/",
            "cifar100": "cifar-100-python/",
            "svhn": "train_32x32.mat and test_32x32.mat",
        }[name]
        raise FileNotFoundError(
            f"{name} was not found under --data-dir {root} (expected {expected} there, as torchvision "
            f"lays it out; torchvision said: {err}). This harness never downloads: fetch it once yourself"
        ) from None
    (tr, te) = (_as_tensors(x, y, name, cl) for x, y, cl in pairs)
    classes = 100 if name == "cifar100" else 10
    return DataSplit(tr, te, tuple(tr.tensors[0].shape[1:]), classes)


def _tiny_imagenet(root: Path) -> DataSplit:
    tv = _torchvision()
    base = root / "tiny-imagenet-200" if (root / "tiny-imagenet-200").is_dir() else root
    train_dir = base / "train"
    test_dir = base / "val" / "images"
    if not (test_dir.is_dir() and any(p.is_dir() for p in test_dir.iterdir())):
        test_dir = base / "val"
    for d in (train_dir, test_dir):
        if not d.is_dir() or not any(p.is_dir() for p in d.iterdir()):
            raise FileNotFoundError(
                f"Tiny-ImageNet needs ImageFolder trees (one sub-folder per class) at {train_dir} and at "
                f"{base / 'val' / 'images'} or {base / 'val'}; {d} has none. Sort val/ into class folders "
                "with val_annotations.txt first"
            )
    mean, std = _STATS["tiny-imagenet"]
    transform = tv.transforms.Compose([tv.transforms.ToTensor(), tv.transforms.Normalize(mean, std)])
    train = tv.datasets.ImageFolder(str(train_dir), transform=transform)
    test = tv.datasets.ImageFolder(str(test_dir), transform=transform)
    if train.classes != test.classes:
        raise ValueError(
            f"the class folders of {train_dir} and {test_dir} differ; they must name the same classes"
        )
    shape = tuple(train[0][0].shape)
    return DataSplit(train, test, shape, len(train.classes))


def load_dataset(
    name: str, data_dir: str | Path | None = None, *, train_size: int | None = None, seed: int = 0
) -> DataSplit:
    """Load a data set by name (see :data:`DATASETS`).

    Parameters
    ----------
    name:
        ``"features"`` (generated from the paper's data model, 2000 training and 2000 test
        signals; see :func:`features`), ``"mnist1d"`` (generated, no folder needed; 8000 training
        and 2000 test examples, twice the standard MNIST-1D, which showed no warm-start gap),
        ``"cifar10"``, ``"cifar100"``,
        ``"svhn"`` or ``"tiny-imagenet"`` (read from ``data_dir``).
    data_dir:
        The folder holding the image data set, laid out as torchvision expects.
    train_size:
        Keep a random subset of this many training examples (the authors use 50000 of
        SVHN's 73257).
    seed:
        Seed of that subset.

    Returns
    -------
    DataSplit
        The training and test sets, with the input shape and number of classes.

    Examples
    --------
    >>> data = load_dataset("mnist1d", train_size=100)
    >>> len(data.train), len(data.test)
    (100, 2000)
    """
    if name == "features":
        data = features()
    elif name == "mnist1d":
        data = mnist1d(num_train=8000, num_test=2000)
    elif name in ("cifar10", "cifar100", "svhn", "tiny-imagenet"):
        if data_dir is None:
            raise ValueError(
                f"{name} is read from a local folder: pass --data-dir DIR (nothing is downloaded)"
            )
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"--data-dir {root} is not a folder")
        data = _tiny_imagenet(root) if name == "tiny-imagenet" else _vision_tensors(name, root)
    else:
        raise ValueError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}")
    if train_size is not None:
        n = len(data.train)  # type: ignore[arg-type]
        if not 0 < train_size <= n:
            raise ValueError(
                f"--train-size {train_size} must be in 1..{n}, the size of {name}'s training set"
            )
        keep = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:train_size].tolist()
        data.train = Subset(data.train, keep)
    return data
