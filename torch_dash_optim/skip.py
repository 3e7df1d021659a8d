r"""Opt-in skipping of the batches that the EMA can no longer see (``tol=``).

With the EMA of :mod:`torch_dash_optim.gather`, batch :math:`i` of :math:`n` enters the
direction with weight :math:`\alpha(1-\alpha)^{n-i}`, so the first :math:`k` batches weigh
together :math:`(1-\alpha)^{n-k} - (1-\alpha)^{n} \le (1-\alpha)^{n-k}`. Skipping them gives the
EMA started at batch :math:`k+1` from zero, which differs from the exact one by at most
:math:`(1-\alpha)^{n-k}\,\max_i \lVert \nabla L(B_i) \rVert`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sized
from itertools import islice
from typing import Any

__all__ = ["check_tol", "skippable", "trim_loader"]


def check_tol(tol: Any, average: str = "ema") -> float:
    """Check ``tol`` (a float in ``[0, 1)``; only with ``average="ema"``) and return it as a float.

    Examples
    --------
    >>> check_tol(1e-4)
    0.0001
    """
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0.0 <= float(tol) < 1.0:
        raise ValueError(f"tol={tol!r} is outside [0, 1); use 0 for the exact EMA or e.g. tol=1e-4")
    if tol and average != "ema":
        raise ValueError(f"tol={tol} needs average='ema' (every batch weighs the same under average={average!r})")
    return float(tol)


def skippable(num_batches: int, alpha: float, tol: float) -> int:
    r"""How many leading batches of ``num_batches`` weigh at most ``tol`` together in the EMA.

    The largest :math:`k < n` with :math:`(1-\alpha)^{n-k} \le` ``tol``; at least one batch is kept.

    Examples
    --------
    >>> skippable(100, 0.3, 1e-4)   # 0.7**26 < 1e-4 <= 0.7**25: the last 26 batches are kept
    74
    >>> skippable(10, 0.3, 0.0)
    0
    """
    decay = 1.0 - alpha
    if tol <= 0.0 or num_batches <= 1:
        return 0
    if decay <= 0.0:
        return num_batches - 1
    keep = max(1, math.ceil(math.log(tol) / math.log(decay) - 1e-12))
    return max(0, num_batches - keep)


def trim_loader(loader: Iterable[Any], *, alpha: float, average: str, tol: float) -> tuple[Iterable[Any], int]:
    """The batches to gather over under ``tol``, and how many leading batches are skipped.

    With ``tol == 0`` the loader is returned unchanged.
    """
    if tol <= 0.0 or average != "ema":
        return loader, 0
    if not isinstance(loader, Sized):
        raise TypeError(
            f"tol={tol} needs a loader with len() to know which batches to skip; got a "
            f"{type(loader).__name__} without len(). Pass tol=0 (exact) or a DataLoader/list"
        )
    skip = skippable(len(loader), alpha, tol)
    if skip == 0:
        return loader, 0
    return islice(loader, skip, None), skip
