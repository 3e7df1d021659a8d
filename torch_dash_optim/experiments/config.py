"""The settings of the warm-start protocol, with the DASH authors' defaults."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["DEFAULT_METHODS", "METHODS", "OPTIMIZERS", "ProtocolConfig"]

#: The warm-starting methods compared (see :func:`~torch_dash_optim.experiments.run_protocol`).
METHODS: tuple[str, ...] = ("cold", "warm", "warm_rm", "sp", "l2_init", "reset", "fire", "dash")
#: The methods of the default run (``dash-warmstart`` without ``--methods``).
DEFAULT_METHODS: tuple[str, ...] = ("cold", "warm", "sp", "fire", "dash")
#: The optimizers, SGD with momentum and SAM around it.
OPTIMIZERS: tuple[str, ...] = ("sgd", "sam")


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
