"""Who won, and whether it is real: paired per-seed differences with 95% intervals, and verdicts.

For a reference method (DASH) and each other method, every seed that ran both gives one
paired difference at the last experiment: test accuracy in points, and the ratio of training
steps. The mean difference gets a two-sided 95% interval from Student's t over the seeds
(n - 1 degrees of freedom); the ratios get the same on their logarithms, so their mean is the
geometric one and the interval stays positive. The verdict says only what the interval supports: an interval that
contains 0 (1 for the step ratio) is *not distinguishable*; with one seed there is no
interval. A run whose last experiment stopped at the epoch cap below the train-accuracy
threshold is *capped*: its accuracy and steps are the cap's, and the verdict says so.

Every verdict names its seed count and how firm it is: :meth:`Comparison.flips` drops each seed
in turn and lists the seeds without which the verdict would read otherwise (a verdict that no
single seed decides *holds without any one seed*; with two seeds, dropping one leaves no
interval, so every verdict of two seeds rests on each of them).

The summary (:mod:`.summary`), the plot (:mod:`.plot`) and the published blocks (rendered by
the repository's ``scripts/render/``) all take their differences and the methods' names
(:data:`LABELS`) from here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .methods import ALIASES, BUILTIN

__all__ = [
    "LABELS",
    "LEVEL",
    "Comparison",
    "Interval",
    "capped",
    "compare",
    "firmness",
    "ratio_interval",
    "t_interval",
    "t_quantile",
    "verdict_lines",
    "verdicts_markdown",
]

#: The confidence level of every interval.
LEVEL = 0.95

#: Each built-in method's name in verdicts, tables and plots, from its ``Method.label`` (and the
#: new method's label for a former name of :data:`~.methods.ALIASES`, found in older results).
#: Other methods show their name.
LABELS: dict[str, str] = {
    **{name: method.label for name, method in BUILTIN.items()},
    **{old: BUILTIN[new].label for old, new in ALIASES.items()},
}


def _t_two_sided(t: float, df: int) -> float:
    """``P(|T| <= t)`` for Student's t with ``df`` degrees of freedom (a finite sum for integer df)."""
    theta = math.atan(t / math.sqrt(df))
    c2, s = math.cos(theta) ** 2, math.sin(theta)
    if df % 2:  # odd: 2/pi * (theta + sin cos (1 + 2/3 cos^2 + 2*4/(3*5) cos^4 + ...))
        term = total = 1.0 if df > 1 else 0.0
        for k in range(1, (df - 3) // 2 + 1):
            term *= c2 * (2 * k) / (2 * k + 1)
            total += term
        return 2 / math.pi * (theta + s * math.cos(theta) * total)
    term = total = 1.0  # even: sin (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ...)
    for k in range(1, (df - 2) // 2 + 1):
        term *= c2 * (2 * k - 1) / (2 * k)
        total += term
    return s * total


def t_quantile(level: float, df: int) -> float:
    """The ``t`` with ``P(|T| <= t) = level`` for Student's t with ``df`` degrees of freedom.

    Parameters
    ----------
    level:
        The two-sided coverage, in (0, 1), e.g. 0.95.
    df:
        Degrees of freedom, an integer >= 1.

    Returns
    -------
    float
        The quantile (to about 1e-12).

    Examples
    --------
    >>> round(t_quantile(0.95, 4), 4), round(t_quantile(0.95, 1), 3)
    (2.7764, 12.706)
    """
    if not 0 < level < 1:
        raise ValueError(f"level={level!r} must be in (0, 1), e.g. 0.95")
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ValueError(f"df={df!r} must be an integer >= 1")
    low, high = 0.0, 1.0
    while _t_two_sided(high, df) < level:
        high *= 2
    for _ in range(200):
        mid = (low + high) / 2
        if _t_two_sided(mid, df) < level:
            low = mid
        else:
            high = mid
        if high - low < 1e-13 * high:
            break
    return (low + high) / 2


@dataclass(frozen=True)
class Interval:
    """A mean over seeds with its 95% t interval (``low``/``high`` are ``None`` for one seed).

    Examples
    --------
    >>> t_interval([2.0, 2.5, 3.0]).contains(0.0)
    False
    """

    mean: float
    low: float | None
    high: float | None
    n: int

    def contains(self, value: float) -> bool | None:
        """Whether ``value`` lies in the interval; ``None`` when there is none (one seed)."""
        if self.low is None or self.high is None:
            return None
        return self.low <= value <= self.high


def t_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """The mean of ``values`` and its two-sided t interval (none for fewer than two values).

    Parameters
    ----------
    values:
        One value per seed (paired differences or ratios).
    level:
        The coverage of the interval.

    Returns
    -------
    Interval
        ``mean``, ``low``, ``high`` and ``n``; ``low`` and ``high`` are ``None`` when
        ``n < 2``, and equal to the mean when every value is the same.

    Raises
    ------
    ValueError
        For no values.

    Examples
    --------
    >>> iv = t_interval([0.0, 1.0, 2.0])
    >>> iv.mean, round(iv.low, 3), round(iv.high, 3)
    (1.0, -1.484, 3.484)
    >>> t_interval([0.4])
    Interval(mean=0.4, low=None, high=None, n=1)
    """
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        raise ValueError("t_interval needs at least one value (one per seed)")
    mean = sum(values) / n
    if n < 2:
        return Interval(mean, None, None, n)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(level, n - 1) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def ratio_interval(ratios: Sequence[float], level: float = LEVEL) -> Interval:
    """The geometric mean of positive ``ratios`` and its t interval, computed on their logarithms.

    Examples
    --------
    >>> iv = ratio_interval([0.5, 2.0])
    >>> iv.mean, round(iv.low, 4) < 1 < round(iv.high, 4)
    (1.0, True)
    """
    if any(not r > 0 for r in ratios):
        raise ValueError(f"ratios={list(ratios)!r} must all be > 0")
    iv = t_interval([math.log(r) for r in ratios], level)
    low = None if iv.low is None else math.exp(iv.low)
    high = None if iv.high is None else math.exp(iv.high)
    return Interval(math.exp(iv.mean), low, high, iv.n)


def capped(record: dict[str, Any], max_epochs: int | None, threshold: float | None) -> bool:
    """Whether an experiment stopped at the epoch cap below the train-accuracy threshold.

    Examples
    --------
    >>> capped({"epochs": 100, "train_acc": 0.98}, 100, 0.999), capped({"epochs": 100, "train_acc": 1.0}, 100, 0.999)
    (True, False)
    """
    if max_epochs is None or threshold is None:
        return False
    return int(record["epochs"]) >= max_epochs and float(record["train_acc"]) < threshold


@dataclass(frozen=True)
class Comparison:
    """The reference method against one other, paired by seed at the last experiment.

    Attributes
    ----------
    method, other, optimizer:
        The reference method (e.g. ``"dash"``), the other one, and the optimizer.
    seeds:
        The seeds that ran both.
    points:
        Per seed, the reference's test accuracy minus the other's, in points.
    step_ratios:
        Per seed, the reference's training steps divided by the other's.
    accuracy:
        :func:`t_interval` of ``points``.
    steps:
        :func:`ratio_interval` of ``step_ratios`` (geometric mean).
    capped:
        Per method, the seeds whose last experiment stopped at the epoch cap.

    Examples
    --------
    >>> from torch_dash_optim.experiments.stats import compare
    >>> recs = [{"method": m, "optimizer": "sgd", "seed": s, "experiment": 2, "test_acc": a,
    ...          "steps": 10, "epochs": 5, "train_acc": 1.0}
    ...         for m, s, a in [("dash", 0, 0.9), ("dash", 1, 0.93), ("warm", 0, 0.8), ("warm", 1, 0.82)]]
    >>> c = compare(recs)[0]
    >>> c.method, c.other, c.seeds, round(c.accuracy.mean, 6)
    ('dash', 'warm', (0, 1), 10.5)
    """

    method: str
    other: str
    optimizer: str
    seeds: tuple[int, ...]
    points: tuple[float, ...]
    step_ratios: tuple[float, ...]
    accuracy: Interval
    steps: Interval
    capped: dict[str, tuple[int, ...]]

    def accuracy_verdict(self) -> str:
        """``DASH higher`` (interval above 0), ``DASH lower``, ``not distinguishable`` or ``one seed: no interval``."""
        return _verdict(self.accuracy, 0.0, f"{_label(self.method)} higher", f"{_label(self.method)} lower")

    def steps_verdict(self) -> str:
        """``DASH fewer`` (interval below 1), ``DASH more``, ``not distinguishable`` or ``one seed: no interval``."""
        return _verdict(self.steps, 1.0, f"{_label(self.method)} more", f"{_label(self.method)} fewer")

    def flips(self, what: str = "accuracy") -> dict[int, str]:
        """The seeds without which the verdict would read otherwise, each with that other verdict.

        Each seed is left out in turn and the verdict recomputed on the others (leave one seed
        out). An empty dict: no single seed decides the verdict.

        Parameters
        ----------
        what:
            ``"accuracy"`` or ``"steps"``.

        Returns
        -------
        dict of int to str
            Per seed whose omission changes the verdict, the verdict without it.

        Examples
        --------
        >>> recs = [{"method": m, "optimizer": "sgd", "seed": s, "experiment": 2, "test_acc": a,
        ...          "steps": 10, "epochs": 5, "train_acc": 1.0}
        ...         for s, d in enumerate((0.02, 0.021, 0.019, -0.05)) for m, a in (("dash", 0.9 + d), ("warm", 0.9))]
        >>> c = compare(recs)[0]
        >>> c.accuracy_verdict(), c.flips()
        ('not distinguishable', {3: 'DASH higher'})
        """
        if what not in ("accuracy", "steps"):
            raise ValueError(f"what={what!r} must be 'accuracy' or 'steps'")
        full = self.accuracy_verdict() if what == "accuracy" else self.steps_verdict()
        out: dict[int, str] = {}
        if len(self.seeds) < 2:
            return out
        for i, seed in enumerate(self.seeds):
            if what == "accuracy":
                iv = t_interval(self.points[:i] + self.points[i + 1 :])
                verdict = _verdict(iv, 0.0, f"{_label(self.method)} higher", f"{_label(self.method)} lower")
            else:
                iv = ratio_interval(self.step_ratios[:i] + self.step_ratios[i + 1 :])
                verdict = _verdict(iv, 1.0, f"{_label(self.method)} more", f"{_label(self.method)} fewer")
            if verdict != full:
                out[seed] = verdict
        return out


def _verdict(iv: Interval, null: float, above: str, below: str) -> str:
    """``above``/``below`` when the interval excludes ``null`` on that side, else what it cannot say."""
    inside = iv.contains(null)
    if inside is None:
        return "one seed: no interval"
    if inside:
        return "not distinguishable"
    return above if iv.mean > null else below


def _label(method: str) -> str:
    """A method's name in the verdicts: its label if built in, else the name itself."""
    return LABELS.get(method, method)


def _last(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Each run's record of its last experiment, keyed by ``(method, optimizer, seed)``."""
    out: dict[tuple[str, str, int], dict[str, Any]] = {}
    for r in records:
        key = (r["method"], r["optimizer"], int(r["seed"]))
        if key not in out or r["experiment"] > out[key]["experiment"]:
            out[key] = r
    return out


def compare(
    records: Iterable[dict[str, Any]],
    method: str = "dash",
    max_epochs: int | None = None,
    threshold: float | None = None,
) -> list[Comparison]:
    """Pair ``method`` with every other method, per optimizer, at the last experiment.

    Parameters
    ----------
    records:
        Experiment records (:func:`~torch_dash_optim.experiments.run_protocol`'s).
    method:
        The reference method.
    max_epochs, threshold:
        The protocol's epoch cap and train-accuracy threshold, to flag capped runs
        (``None``: nothing is flagged).

    Returns
    -------
    list of Comparison
        One per (optimizer, other method) with at least one seed in common, in the order
        the methods first appear in ``records``; empty when ``method`` did not run. Only the
        seeds whose runs reached the same last experiment are paired.

    Examples
    --------
    >>> recs = [{"method": m, "optimizer": "sgd", "seed": s, "experiment": 2, "test_acc": a,
    ...          "steps": st, "epochs": 5, "train_acc": 1.0}
    ...         for m, s, a, st in [("dash", 0, 0.9, 50), ("dash", 1, 0.92, 60),
    ...                             ("cold", 0, 0.88, 100), ("cold", 1, 0.89, 100)]]
    >>> c = compare(recs)[0]
    >>> c.other, [round(p, 6) for p in c.points], c.step_ratios
    ('cold', [2.0, 3.0], (0.5, 0.6))
    """
    last = _last(records)
    order = list(dict.fromkeys(m for m, _o, _s in last))
    out = []
    for opt in dict.fromkeys(o for _m, o, _s in last):
        for other in order:
            if other == method:
                continue
            seeds = tuple(
                sorted(
                    s
                    for m, o, s in last
                    if (m, o) == (method, opt)
                    and (other, opt, s) in last
                    and last[(other, opt, s)]["experiment"] == last[(method, opt, s)]["experiment"]
                )
            )
            if not seeds:
                continue
            ref = [last[(method, opt, s)] for s in seeds]
            oth = [last[(other, opt, s)] for s in seeds]
            points = tuple(100 * (a["test_acc"] - b["test_acc"]) for a, b in zip(ref, oth, strict=True))
            ratios = tuple(max(a["steps"], 1) / max(b["steps"], 1) for a, b in zip(ref, oth, strict=True))
            flags = {
                m: tuple(s for s, r in zip(seeds, rs, strict=True) if capped(r, max_epochs, threshold))
                for m, rs in ((method, ref), (other, oth))
            }
            out.append(
                Comparison(
                    method,
                    other,
                    opt,
                    seeds,
                    points,
                    ratios,
                    t_interval(points),
                    ratio_interval(ratios),
                    {m: s for m, s in flags.items() if s},
                )
            )
    return out


def _signed(x: float, digits: int) -> str:
    """A signed number with a true minus sign."""
    return f"{x:+.{digits}f}".replace("-", "−")


def _bracket(iv: Interval, digits: int, signed: bool) -> str:
    """`` [low, high]``, or nothing without an interval."""
    if iv.low is None or iv.high is None:
        return ""
    fmt = (lambda v: _signed(v, digits)) if signed else (lambda v: f"{v:.{digits}f}".replace("-", "−"))
    return f" [{fmt(iv.low)}, {fmt(iv.high)}]"


def _cap_note(c: Comparison, max_epochs: int | None) -> str:
    """The warning appended to a verdict whose runs stopped at the epoch cap ('' if none did)."""
    if not c.capped:
        return ""
    cap = f"the {max_epochs}-epoch cap" if max_epochs is not None else "the epoch cap"
    parts = [f"{_label(m)} on {len(s)} of {len(c.seeds)} seeds" for m, s in c.capped.items()]
    return f"; CAPPED: {' and '.join(parts)} stopped at {cap} below the threshold, so this is not a fair comparison"


def firmness(c: Comparison, what: str = "accuracy") -> str:
    """How firm a verdict is: its seed count, and whether any single seed decides it.

    Parameters
    ----------
    c:
        A comparison of :func:`compare`.
    what:
        ``"accuracy"`` or ``"steps"``.

    Returns
    -------
    str
        ``"1 seed"``; ``"5 seeds, holds without any one seed"``; ``"5 seeds; without seed 3:
        not distinguishable"`` (every seed whose omission changes the verdict, with the verdict
        then); or, for two seeds, ``"2 seeds; leaving either out leaves no interval"``.

    Examples
    --------
    >>> recs = [{"method": m, "optimizer": "sgd", "seed": s, "experiment": 2, "test_acc": a,
    ...          "steps": 10, "epochs": 5, "train_acc": 1.0}
    ...         for s, d in enumerate((0.02, 0.021, 0.019)) for m, a in (("dash", 0.9 + d), ("warm", 0.9))]
    >>> firmness(compare(recs)[0])
    '3 seeds, holds without any one seed'
    """
    n = len(c.seeds)
    if n < 2:
        return f"{n} seed"
    flips = c.flips(what)
    if not flips:
        return f"{n} seeds, holds without any one seed"
    if n == 2:
        return "2 seeds; leaving either out leaves no interval"
    groups: dict[str, list[int]] = {}
    for seed, verdict in flips.items():
        groups.setdefault(verdict, []).append(seed)
    parts = [
        f"without seed {_join(seeds)}{' (any one of them)' if len(seeds) > 1 else ''}: {verdict}"
        for verdict, seeds in groups.items()
    ]
    return f"{n} seeds; " + "; ".join(parts)


def _join(seeds: Sequence[int]) -> str:
    """``1``, ``1 or 2``, ``1, 2 or 3``."""
    items = [str(s) for s in seeds]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def verdict_lines(comparisons: Sequence[Comparison], max_epochs: int | None = None) -> list[str]:
    """Two one-line verdicts per comparison: accuracy (points) and steps (ratio).

    Parameters
    ----------
    comparisons:
        :func:`compare`'s output.
    max_epochs:
        The epoch cap, named in the note on capped runs.

    Returns
    -------
    list of str
        e.g. ``DASH − Cold (random init): +0.40 [−0.20, +1.00] points, not distinguishable (5
        seeds, holds without any one seed)`` and ``DASH/Cold (random init) steps: 0.55× [0.50,
        0.60], DASH fewer (5 seeds; without seed 2: not distinguishable)``: each with its seed
        count and :func:`firmness`; the optimizer is named when there are several.

    Examples
    --------
    >>> recs = [{"method": m, "optimizer": "sgd", "seed": s, "experiment": 2, "test_acc": a,
    ...          "steps": st, "epochs": 5, "train_acc": 1.0}
    ...         for m, s, a, st in [("dash", 0, 0.9, 50), ("dash", 1, 0.92, 60), ("dash", 2, 0.91, 55),
    ...                             ("warm", 0, 0.88, 50), ("warm", 1, 0.93, 60), ("warm", 2, 0.90, 50)]]
    >>> for line in verdict_lines(compare(recs)):
    ...     print(line)
    DASH − Warm: +0.67 [−3.13, +4.46] points, not distinguishable (3 seeds, holds without any one seed)
    DASH/Warm steps: 1.03× [0.90, 1.18], not distinguishable (3 seeds, holds without any one seed)
    """
    several = len({c.optimizer for c in comparisons}) > 1
    lines = []
    for c in comparisons:
        ref, other = _label(c.method), _label(c.other)
        opt = f" ({c.optimizer.upper()})" if several else ""
        note = _cap_note(c, max_epochs)
        lines.append(
            f"{ref} − {other}{opt}: {_signed(c.accuracy.mean, 2)}{_bracket(c.accuracy, 2, True)} points, "
            f"{c.accuracy_verdict()} ({firmness(c, 'accuracy')}){note}"
        )
        lines.append(
            f"{ref}/{other}{opt} steps: {c.steps.mean:.2f}×{_bracket(c.steps, 2, False)}, {c.steps_verdict()} "
            f"({firmness(c, 'steps')}){note}"
        )
    return lines


def verdicts_markdown(
    records: Iterable[dict[str, Any]],
    method: str = "dash",
    max_epochs: int | None = None,
    threshold: float | None = None,
) -> str:
    """The verdicts as a Markdown list with a line that says how to read them ('' if none).

    Parameters
    ----------
    records:
        Experiment records.
    method:
        The reference method.
    max_epochs, threshold:
        The protocol's cap and threshold (to flag capped runs).

    Returns
    -------
    str
        A paragraph and one bullet per verdict, or ``''`` when ``method`` has no partner.

    Examples
    --------
    >>> verdicts_markdown([])
    ''
    """
    comparisons = compare(records, method, max_epochs, threshold)
    if not comparisons:
        return ""
    head = (
        f"{_label(method)} against each other method at the last experiment, paired by seed: the mean "
        f"difference in test accuracy (points) and the geometric mean ratio of training steps, each with its "
        f"{100 * LEVEL:.0f}% t interval over seeds. An interval that contains 0 (1 for steps) is "
        "not distinguishable. Each verdict names its seeds, and the seeds without which it would read "
        "otherwise (leave one seed out)."
    )
    return head + "\n\n" + "\n".join(f"- {line}" for line in verdict_lines(comparisons, max_epochs))
