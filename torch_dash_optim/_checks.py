"""Argument checks shared by the public classes: each error names the bad value and the fix."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def check_lambd(lambd: Any, where: str = "lambd") -> float:
    """Return ``lambd`` as a float in [0, 1], or raise."""
    if isinstance(lambd, bool) or not isinstance(lambd, (int, float)):
        raise TypeError(f"{where} must be a number in [0, 1]; got {lambd!r} of type {type(lambd).__name__}")
    if not (0.0 <= float(lambd) <= 1.0):
        raise ValueError(
            f"{where}={lambd!r} is outside [0, 1]; it is the floor of the shrink factor "
            "(the paper uses 0.3; 1 disables shrinking)"
        )
    return float(lambd)


def check_alpha(alpha: Any) -> float:
    """Return ``alpha`` as a float in (0, 1], or raise."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"alpha must be a number in (0, 1]; got {alpha!r} of type {type(alpha).__name__}")
    if not (0.0 < float(alpha) <= 1.0) or math.isnan(float(alpha)):
        raise ValueError(
            f"alpha={alpha!r} is outside (0, 1]; it is the EMA weight of each new batch "
            "(the paper uses 0.3; 1 keeps only the last batch)"
        )
    return float(alpha)


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
