"""Paired comparisons at the last stage: one method's held-out loss minus another's, per seed, with a t interval.

:func:`~torch_dash_optim.experiments.text.compare_last` pairs the methods;
each pair is a :class:`~torch_dash_optim.experiments.text.LastStage`, which gives its verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..stats import Interval, t_interval
from .settings import LABELS, METHODS

__all__ = ["LastStage", "compare_last"]


@dataclass(frozen=True)
class LastStage:
    """DASH (or another reference) against one method at the last stage, paired by seed.

    Attributes
    ----------
    method, other:
        The reference and the other method.
    seeds:
        The seeds that ran both.
    differences:
        Per seed, the reference's held-out loss minus the other's (nats per byte; below 0:
        the reference predicts the held-out text better).
    interval:
        Their mean with its 95% t interval (:func:`~torch_dash_optim.experiments.stats.t_interval`).

    Examples
    --------
    >>> from torch_dash_optim.experiments.stats import t_interval
    >>> c = LastStage("dash", "warm", (0, 1, 2), (-0.02, -0.03, -0.01), t_interval([-0.02, -0.03, -0.01]))
    >>> print(c.line())
    DASH − Warm: −0.020 [−0.045, +0.005] nats/byte, not distinguishable (3 seeds)
    """

    method: str
    other: str
    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    interval: Interval

    def verdict(self) -> str:
        """``DASH lower (better)`` (interval below 0), ``DASH higher (worse)``, ``not distinguishable`` or none."""
        inside = self.interval.contains(0.0)
        if inside is None:
            return "one seed: no interval"
        if inside:
            return "not distinguishable"
        label = LABELS.get(self.method, self.method)
        return f"{label} lower (better)" if self.interval.mean < 0 else f"{label} higher (worse)"

    def line(self) -> str:
        """One line: ``DASH − Warm: −0.012 [−0.020, −0.004] nats/byte, DASH lower (better) (5 seeds)``."""
        iv = self.interval
        bracket = "" if iv.low is None else f" [{_signed(iv.low)}, {_signed(iv.high)}]"
        n = f"{iv.n} seed{'s' if iv.n != 1 else ''}"
        return (f"{LABELS.get(self.method, self.method)} − {LABELS.get(self.other, self.other)}: "
                f"{_signed(iv.mean)}{bracket} nats/byte, {self.verdict()} ({n})")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {"method": self.method, "other": self.other, "seeds": list(self.seeds),
                "differences": list(self.differences), **asdict(self.interval), "verdict": self.verdict()}


def _signed(x: float | None, digits: int = 3) -> str:
    """``x`` with its sign and a true minus sign (``+0.012``, ``−0.020``); ``n/a`` for none."""
    return "n/a" if x is None else f"{x:+.{digits}f}".replace("-", "−")


def compare_last(records: Sequence[dict[str, Any]], method: str = "dash", others: Sequence[str] | None = None
                 ) -> list[LastStage]:
    """Pair ``method`` with each other method at the last stage: held-out loss differences per seed.

    Parameters
    ----------
    records:
        Records of :func:`run_text`.
    method:
        The reference (default DASH).
    others:
        The methods to compare with (default: every other one present, in the order of
        :data:`~torch_dash_optim.experiments.text.settings.METHODS`).

    Returns
    -------
    list of LastStage
        One per other method that shares at least one seed with ``method``.

    Examples
    --------
    >>> recs = [{"seed": s, "method": m, "stage": 2, "heldout_loss": v}
    ...         for s, m, v in [(0, "dash", 1.0), (1, "dash", 1.1), (0, "warm", 1.2), (1, "warm", 1.2)]]
    >>> c = compare_last(recs)[0]
    >>> c.other, c.differences, c.verdict()
    ('warm', (-0.2, -0.1), 'not distinguishable')
    """
    last_stage = max((int(r["stage"]) for r in records), default=0)
    last = {(r["method"], int(r["seed"])): float(r["heldout_loss"]) for r in records if r["stage"] == last_stage}
    present = [m for m in METHODS if any(k[0] == m for k in last)]
    present += sorted({k[0] for k in last} - set(present))
    out = []
    for other in others if others is not None else [m for m in present if m != method]:
        seeds = tuple(sorted(s for m, s in last if m == method and (other, s) in last))
        if not seeds:
            continue
        diffs = tuple(round(last[(method, s)] - last[(other, s)], 12) for s in seeds)
        out.append(LastStage(method, other, seeds, diffs, t_interval(diffs)))
    return out

