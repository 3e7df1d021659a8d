"""The callbacks' ``include=``/``exclude=``: checked once, forwarded to every call only when set."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["check_patterns", "selection_kwargs"]


def check_patterns(include: Any, exclude: Any, who: str) -> None:
    """Refuse ``include``/``exclude`` that are not a glob pattern, a sequence of them or None."""
    for name, value in (("include", include), ("exclude", exclude)):
        if value is None or isinstance(value, str):
            continue
        if not isinstance(value, Sequence) or not all(isinstance(p, str) for p in value):
            raise TypeError(
                f"{who}({name}=...) must be a glob pattern over parameter names (a str such as 'lm_head.*'), a "
                f"list of them, or None; got {value!r}"
            )


def selection_kwargs(include: Any, exclude: Any) -> dict[str, Any]:
    """``on_new_data``'s keywords for the patterns that are set (the others are left to the wrapper)."""
    out: dict[str, Any] = {}
    if include is not None:
        out["include"] = include
    if exclude is not None:
        out["exclude"] = exclude
    return out
