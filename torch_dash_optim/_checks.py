"""Argument checks shared by the public classes: each error names the bad value and the fix.

Numbers may be Python ``int``/``float`` or any other real scalar (NumPy's ``float32``,
``int64``, ...: everything registered as :class:`numbers.Real`); they are returned as a
Python ``float``. ``bool`` is refused: ``True`` is not meant as ``1.0``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

from torch import nn


def check_real(name: str, value: Any, interval: str) -> float:
    """Return ``value`` as a float if it is a real scalar (not a bool), else raise TypeError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in {interval}; got {value!r} of type {type(value).__name__}")
    return float(value)


def check_lambd(lambd: Any, where: str = "lambd") -> float:
    """Return ``lambd`` as a float in [0, 1], or raise."""
    value = check_real(where, lambd, "[0, 1]")
    if not (0.0 <= value <= 1.0):
        raise ValueError(
            f"{where}={lambd!r} is outside [0, 1]; it is the floor of the shrink factor "
            "(the paper uses 0.3; 1 disables shrinking)"
        )
    return value


def check_alpha(alpha: Any) -> float:
    """Return ``alpha`` as a float in (0, 1], or raise."""
    value = check_real("alpha", alpha, "(0, 1]")
    if not (0.0 < value <= 1.0) or math.isnan(value):
        raise ValueError(
            f"alpha={alpha!r} is outside (0, 1]; it is the EMA weight of each new batch "
            "(the paper uses 0.3; 1 keeps only the last batch)"
        )
    return value


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``, or raise naming them."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; use one of {', '.join(map(repr, choices))}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool, or raise."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return value


def check_losses(loss_fn: Any, batch_loss: Any) -> None:
    """Refuse two losses at once, a loss that is not callable, and a loss class given for an instance."""
    if loss_fn is not None and batch_loss is not None:
        raise ValueError("give loss_fn (criterion(outputs, targets)) or batch_loss (fn(model, batch)), not both")
    for name, fn in (("loss_fn", loss_fn), ("batch_loss", batch_loss)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be callable; got {type(fn).__name__}")
        if isinstance(fn, type) and issubclass(fn, nn.Module):
            raise TypeError(
                f"{name} is the class {fn.__name__}, not an instance of it; pass {fn.__name__}() "
                f"(e.g. {name}=torch.nn.{fn.__name__}())"
            )
