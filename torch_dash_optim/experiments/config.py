"""The settings of the warm-start protocol, with the DASH authors' defaults."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = [
    "DATASET_PRESETS",
    "DEFAULT_DATASET",
    "DEFAULT_METHODS",
    "DEFAULT_SEEDS",
    "METHODS",
    "MODEL_PRESETS",
    "MODEL_WIDTHS",
    "OPTIMIZERS",
    "PAPER_DATASETS",
    "QUICK_PRESET",
    "ProtocolConfig",
    "parse_seeds",
    "seeds_argument",
]

#: The warm-starting methods compared (see :func:`~torch_dash_optim.experiments.run_protocol`).
#: Three are controls of DASH that shrink the same parameters from the same gradient pass:
#: ``uniform_global`` shrinks them all by one factor (DASH's mean over every unit, or
#: ``uniform_factor`` of :class:`~torch_dash_optim.experiments.config.ProtocolConfig`),
#: ``uniform_matched`` shrinks each tensor by DASH's mean factor for that tensor, and
#: ``shuffled`` applies DASH's own factors permuted at random within each tensor. DASH against
#: the last two tells whether *which* units shrink (the direction) matters, beyond how much
#: each layer shrinks.
METHODS: tuple[str, ...] = (
    "cold",
    "warm",
    "warm_rm",
    "sp",
    "l2_init",
    "reset",
    "fire",
    "uniform_global",
    "uniform_matched",
    "shuffled",
    "dash",
)
#: The methods of the default run (``dash-warmstart`` without ``--methods``).
DEFAULT_METHODS: tuple[str, ...] = (
    "cold",
    "warm",
    "sp",
    "fire",
    "uniform_global",
    "uniform_matched",
    "shuffled",
    "dash",
)
#: The optimizers, SGD with momentum and SAM around it.
OPTIMIZERS: tuple[str, ...] = ("sgd", "sam")

#: The data set of ``dash-warmstart`` without ``--dataset``: generated from the paper's data
#: model (see :mod:`~torch_dash_optim.experiments.features`), where warm starting clearly hurts.
DEFAULT_DATASET: str = "features"
#: The seeds of the default run (``--seeds`` overrides them), each with its own data draw. Twenty,
#: so that the default run's main verdicts (DASH against the cold and the warm start, Shrink &
#: Perturb and the per-tensor uniform shrink) hold with any one seed left out; one seed of the
#: default methods takes about 45 s of CPU time, so the run fits 15 minutes on 2 cores.
DEFAULT_SEEDS: tuple[int, ...] = tuple(range(20))

#: The paper's image data sets, whose presets are the authors' settings (:data:`DATASET_PRESETS`).
PAPER_DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "svhn", "tiny-imagenet")

_IMAGE_PRESET: dict[str, Any] = {
    "model": "resnet18",
    "width": 1000,
    "depth": 2,
    "mlp_bn": True,
    "chunks": 50,
    "lr": 0.001,
    "max_epochs": 10000,
    "l2_init": 0.01,
    "train_size": None,
}

#: Per-data-set defaults of the settings left unset on the command line. The image data sets
#: use the authors' values (ResNet-18, 50 chunks, SGD lr 1e-3); ``features`` and ``mnist1d``
#: those chosen for a CPU run (see the docs' Experiments page, which lists every setting tried).
#: ``mnist`` (real digits, ``cnn2d``) is sized for a CPU run of every method on 5 seeds in under
#: 30 minutes on 2 cores: 3840 training digits in 10 chunks of 384 (3 batches of 128, so no
#: epoch ends in a small BatchNorm batch), learning rate 0.02, epoch cap 100.
#: ``width`` is the model's (``None``: :data:`MODEL_WIDTHS`); for the image data sets it is the
#: width of ``--model mlp``.
DATASET_PRESETS: dict[str, dict[str, Any]] = {
    "features": {
        "model": "patchcnn",
        "width": None,
        "depth": 3,
        "mlp_bn": False,
        "chunks": 10,
        "lr": 0.01,
        "max_epochs": 300,
        "l2_init": 0.001,
        "train_size": None,
    },
    "mnist1d": {
        "model": "cnn1d",
        "width": None,
        "depth": 3,
        "mlp_bn": False,
        "chunks": 10,
        "lr": 0.05,
        "max_epochs": 100,
        "l2_init": 0.001,
        "train_size": None,
    },
    **{name: dict(_IMAGE_PRESET, train_size=50000 if name == "svhn" else None) for name in PAPER_DATASETS},
    "mnist": {
        "model": "cnn2d",
        "width": None,
        "depth": 3,
        "mlp_bn": False,
        "chunks": 10,
        "lr": 0.02,
        "max_epochs": 100,
        "l2_init": 0.001,
        "train_size": 3840,
    },
}

#: Settings that depend on the model as well as the data set (``--model mlp`` on MNIST-1D keeps
#: the settings of the earlier MLP default).
MODEL_PRESETS: dict[tuple[str, str], dict[str, Any]] = {
    ("mnist1d", "mlp"): {"lr": 0.01, "max_epochs": 300, "width": 256},
}

#: Model widths when neither ``--width`` nor a preset gives one.
MODEL_WIDTHS: dict[str, int] = {"patchcnn": 64, "cnn1d": 32, "cnn2d": 8, "mlp": 1000}

#: What ``--quick`` sets, over the data set's preset and under the flags given: a smoke run of
#: two seeds on a third of the ``features`` training set in 4 chunks. Its numbers are not
#: evidence.
QUICK_PRESET: dict[str, Any] = {"train_size": 600, "chunks": 4, "max_epochs": 100, "seeds": [0, 1]}


@dataclass(frozen=True)
class ProtocolConfig:
    """Hyperparameters of the protocol; every method gets the same ones.

    The defaults are those of the authors' ``main.py``.

    Attributes
    ----------
    num_chunks:
        K, the number of equal chunks the training set is split into (the remainder of
        ``len(train) // K`` is dropped, as in the authors' code).
    lr:
        SGD learning rate (also SAM's base optimizer).
    momentum:
        SGD momentum.
    weight_decay:
        SGD weight decay.
    batch_size:
        Training batch size.
    test_batch_size:
        Evaluation batch size.
    threshold:
        Training on chunks ``1..j`` stops at the first epoch whose train accuracy (over the
        epoch's batches, in train mode) reaches this.
    max_epochs:
        Epoch cap per experiment.
    rho:
        SAM's radius.
    dash_lambd:
        DASH's floor.
    dash_alpha:
        DASH's EMA weight.
    sp_shrink:
        Shrink & Perturb's factor.
    sp_sigma:
        Shrink & Perturb's noise standard deviation.
    l2_init:
        Strength of the L2-init penalty.
    fire_alpha:
        FIRE's mixing weight: the weights become ``(1 - fire_alpha) W + fire_alpha FIRE(W)``
        (1: FIRE's re-initialisation itself).
    uniform_factor:
        The factor of the ``uniform_global`` control; ``None``: DASH's mean factor at that stage.

    Examples
    --------
    >>> ProtocolConfig().lr
    0.001
    >>> ProtocolConfig(num_chunks=1)
    Traceback (most recent call last):
    ...
    ValueError: num_chunks=1 must be an integer >= 2: with one chunk nothing is warm-started
    """

    num_chunks: int = 50
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 128
    test_batch_size: int = 256
    threshold: float = 0.999
    max_epochs: int = 10000
    rho: float = 0.1
    dash_lambd: float = 0.3
    dash_alpha: float = 0.3
    sp_shrink: float = 0.3
    sp_sigma: float = 0.01
    l2_init: float = 0.01
    fire_alpha: float = 1.0
    uniform_factor: float | None = None

    def __post_init__(self) -> None:
        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        if not is_int(self.num_chunks) or self.num_chunks < 2:
            raise ValueError(
                f"num_chunks={self.num_chunks!r} must be an integer >= 2: with one chunk "
                "nothing is warm-started"
            )
        for name in ("batch_size", "test_batch_size", "max_epochs"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise ValueError(f"{name}={value!r} must be an integer >= 1")
        if not is_num(self.lr) or self.lr <= 0:
            raise ValueError(f"lr={self.lr!r} must be a number > 0, such as 0.01")
        for name in ("momentum", "weight_decay", "rho", "sp_sigma", "l2_init"):
            value = getattr(self, name)
            if not is_num(value) or value < 0:
                raise ValueError(f"{name}={value!r} must be a number >= 0")
        if not is_num(self.threshold) or not 0 < self.threshold <= 1:
            raise ValueError(f"threshold={self.threshold!r} must be a train accuracy in (0, 1], e.g. 0.999")
        for name in ("dash_lambd", "sp_shrink"):
            value = getattr(self, name)
            if not is_num(value) or not 0 <= value <= 1:
                raise ValueError(f"{name}={value!r} must be a number in [0, 1], such as 0.3")
        if not is_num(self.dash_alpha) or not 0 < self.dash_alpha <= 1:
            raise ValueError(
                f"dash_alpha={self.dash_alpha!r} must be a number in (0, 1], such as 0.3"
            )
        if not is_num(self.fire_alpha) or not 0 < self.fire_alpha <= 1:
            raise ValueError(
                f"fire_alpha={self.fire_alpha!r} must be a number in (0, 1], such as 1.0 (FIRE itself)"
            )
        if self.uniform_factor is not None and (not is_num(self.uniform_factor) or not 0 < self.uniform_factor <= 1):
            raise ValueError(
                f"uniform_factor={self.uniform_factor!r} must be a number in (0, 1], such as 0.5, or None "
                "(DASH's mean factor)"
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a plain dict (for JSON).

        Examples
        --------
        >>> ProtocolConfig().to_dict()["threshold"]
        0.999
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ProtocolConfig:
        """Build a config from :meth:`to_dict`'s output, refusing unknown keys.

        Examples
        --------
        >>> ProtocolConfig.from_dict({"lr": 0.01}).lr
        0.01
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown protocol settings {unknown}; known ones are {sorted(known)}")
        return cls(**values)


def parse_seeds(text: str) -> list[int]:
    """Seeds written as a comma-separated list, ranges included: ``"0,1,2"``, ``"0-7"``, ``"0-3,10"``.

    Raises :class:`ValueError` on a part that is not an integer or a range of them.

    Examples
    --------
    >>> parse_seeds("0-3,10")
    [0, 1, 2, 3, 10]
    """
    seeds: list[int] = []
    for part in (t.strip() for t in text.split(",")):
        if "-" in part:
            first, last = (int(x) for x in part.split("-"))
            seeds += list(range(first, last + 1))
        elif part:
            seeds.append(int(part))
    return seeds


def seeds_argument(text: str) -> list[int]:
    """The argparse ``type`` of a ``--seeds`` option: distinct integers >= 0, comma-separated.

    Raises ``argparse.ArgumentTypeError`` with a message that names the bad value.

    Examples
    --------
    >>> seeds_argument("0,1,2")
    [0, 1, 2]
    """
    import argparse

    try:
        seeds = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        message = f"seeds must be comma-separated integers such as 0,1,2; got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    if not seeds or any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"seeds must be integers >= 0, such as 0,1,2; got {text!r}")
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    if twice:
        raise argparse.ArgumentTypeError(
            f"{text!r} names seed {', '.join(map(str, twice))} twice; give each seed once, e.g. 0,1,2"
        )
    return seeds
