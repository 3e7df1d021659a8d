"""The paper's summary table: four columns, mean (std) over seeds, rows = methods, SGD/SAM."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from .config import METHODS, OPTIMIZERS

__all__ = [
    "FACTOR_STATS",
    "LABELS",
    "METRICS",
    "factor_markdown",
    "factor_summary",
    "per_run",
    "summarize",
    "summary_markdown",
]

#: The four summary metrics, as (key, column title, is it an accuracy).
METRICS: tuple[tuple[str, str, bool], ...] = (
    ("last_acc", "Test acc at last experiment (%)", True),
    ("last_steps", "Steps at last experiment", False),
    ("avg_acc", "Test acc, avg over experiments (%)", True),
    ("avg_steps", "Steps, avg over experiments", False),
)

#: The name of each method in tables and plots.
LABELS: dict[str, str] = {
    "cold": "Cold (random init)",
    "warm": "Warm",
    "warm_rm": "Warm, optimizer reset",
    "sp": "Shrink & Perturb",
    "l2_init": "L2 init",
    "reset": "Last-layer reset",
    "fire": "FIRE",
    "dash": "DASH",
}

#: The per-kind factor statistics averaged by :func:`factor_summary`.
FACTOR_STATS: tuple[str, ...] = ("at_floor", "mean", "q10", "q25", "q50", "q75", "q90")


def per_run(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, float]]:
    """Return the four metrics of each complete run, keyed by ``(method, optimizer, seed)``.

    Parameters
    ----------
    records:
        Experiment records, each with ``method``, ``optimizer``, ``seed``, ``experiment``,
        ``test_acc`` and ``steps``.

    Returns
    -------
    dict
        Per ``(method, optimizer, seed)``, the metrics of :data:`METRICS`: test accuracy and
        steps at the last experiment, and their means over the experiments.

    Examples
    --------
    >>> recs = [{"method": "warm", "optimizer": "sgd", "seed": 0, "experiment": e,
    ...          "test_acc": a, "steps": s} for e, a, s in [(1, 0.5, 10), (2, 0.7, 30)]]
    >>> per_run(recs)[("warm", "sgd", 0)]
    {'last_acc': 0.7, 'last_steps': 30.0, 'avg_acc': 0.6, 'avg_steps': 20.0}
    """
    runs: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        runs[(r["method"], r["optimizer"], int(r["seed"]))].append(r)
    out = {}
    for key, rs in runs.items():
        rs = sorted(rs, key=lambda r: r["experiment"])
        out[key] = {
            "last_acc": rs[-1]["test_acc"],
            "last_steps": float(rs[-1]["steps"]),
            "avg_acc": sum(r["test_acc"] for r in rs) / len(rs),
            "avg_steps": sum(r["steps"] for r in rs) / len(rs),
        }
    return out


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def summarize(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Return, per ``(method, optimizer)``, each metric's mean and std over seeds and the seed count.

    The std is the population one (``numpy.std``'s default, ``ddof=0``).

    Parameters
    ----------
    records:
        Experiment records, each with ``method``, ``optimizer``, ``seed``, ``experiment``,
        ``test_acc`` and ``steps``.

    Returns
    -------
    dict
        Per ``(method, optimizer)``: ``n`` (the number of seeds) and, for each metric of
        :data:`METRICS`, a ``(mean, std)`` pair.

    Examples
    --------
    >>> recs = [{"method": "warm", "optimizer": "sgd", "seed": s, "experiment": 1,
    ...          "test_acc": a, "steps": 10} for s, a in [(0, 0.5), (1, 0.7)]]
    >>> row = summarize(recs)[("warm", "sgd")]
    >>> row["n"], round(row["last_acc"][0], 3), round(row["last_acc"][1], 3)
    (2, 0.6, 0.1)
    """
    groups: dict[tuple[str, str], list[dict[str, float]]] = defaultdict(list)
    for (method, opt, _seed), metrics in per_run(records).items():
        groups[(method, opt)].append(metrics)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for key, runs in groups.items():
        row: dict[str, Any] = {"n": len(runs)}
        for name, _title, _is_acc in METRICS:
            row[name] = _mean_std([r[name] for r in runs])
        out[key] = row
    return out


def _cell(stats: dict[str, Any] | None, name: str, is_acc: bool) -> str:
    if stats is None:
        return "-"
    mean, std = stats[name]
    if is_acc:
        return f"{100 * mean:.2f} ({100 * std:.2f})"
    return f"{mean:.0f} ({std:.0f})"


def summary_markdown(records: Iterable[dict[str, Any]]) -> str:
    """Return the summary as a markdown table in the paper's shape (SGD and SAM per metric).

    Parameters
    ----------
    records:
        Experiment records, each with ``method``, ``optimizer``, ``seed``, ``experiment``,
        ``test_acc`` and ``steps``.

    Returns
    -------
    str
        The table: one row per method, a (SGD, SAM) pair of columns per metric, each cell
        ``mean (std)``.

    Examples
    --------
    >>> recs = [{"method": "warm", "optimizer": "sgd", "seed": 0, "experiment": 1,
    ...          "test_acc": 0.5, "steps": 10}]
    >>> print(summary_markdown(recs).splitlines()[2])
    | Warm | 50.00 (0.00) | 10 (0) | 50.00 (0.00) | 10 (0) |
    """
    stats = summarize(records)
    methods = [m for m in METHODS if any(k[0] == m for k in stats)]
    opts = [o for o in OPTIMIZERS if any(k[1] == o for k in stats)]
    header = ["Method"] + [f"{title}, {o.upper()}" for _n, title, _a in METRICS for o in opts]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in methods:
        cells = [_cell(stats.get((m, o)), name, is_acc) for name, _t, is_acc in METRICS for o in opts]
        lines.append("| " + " | ".join([LABELS[m]] + cells) + " |")
    seeds = sorted({row["n"] for row in stats.values()})
    lines.append("")
    lines.append(f"Mean (std) over {'/'.join(map(str, seeds))} seed(s); std with ddof=0.")
    return "\n".join(lines)


def factor_summary(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Average DASH's per-kind factor statistics over seeds and experiments, per optimizer.

    Parameters
    ----------
    records:
        Experiment records; those without ``dash_factors`` (other methods' records) are
        ignored.

    Returns
    -------
    dict
        Per ``(optimizer, kind)``: ``units`` (per experiment), ``n`` (experiments
        averaged) and the mean of each of :data:`FACTOR_STATS`.

    Examples
    --------
    >>> recs = [{"method": "dash", "optimizer": "sgd", "seed": s, "experiment": 2,
    ...          "dash_factors": {"conv": {"units": 8, "at_floor": f, "mean": 0.5, "q10": 0.3,
    ...                                    "q25": 0.3, "q50": 0.5, "q75": 0.7, "q90": 0.9}}}
    ...         for s, f in [(0, 0.2), (1, 0.4)]]
    >>> row = factor_summary(recs)[("sgd", "conv")]
    >>> row["n"], round(row["at_floor"], 3)
    (2, 0.3)
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        for kind, stats in (r.get("dash_factors") or {}).items():
            groups[(r["optimizer"], kind)].append(stats)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for key, rows in groups.items():
        out[key] = {"units": rows[-1]["units"], "n": len(rows)}
        out[key].update({k: sum(r[k] for r in rows) / len(rows) for k in FACTOR_STATS})
    return out


def factor_markdown(records: Iterable[dict[str, Any]]) -> str:
    """Return :func:`factor_summary` as a markdown table ('' if no DASH experiment has factors).

    Parameters
    ----------
    records:
        Experiment records; those without ``dash_factors`` (other methods' records) are
        ignored.

    Returns
    -------
    str
        The table, one row per optimizer and layer kind, or ``''``.

    Examples
    --------
    >>> recs = [{"method": "dash", "optimizer": "sgd", "seed": 0, "experiment": 2,
    ...          "dash_factors": {"linear": {"units": 4, "at_floor": 0.5, "mean": 0.5, "q10": 0.3,
    ...                                      "q25": 0.3, "q50": 0.4, "q75": 0.7, "q90": 0.9}}}]
    >>> print(factor_markdown(recs).splitlines()[2])
    | SGD | Linear weights | 4 | 50.0 | 0.50 | 0.30 | 0.40 | 0.90 |
    """
    from .methods import LAYER_KINDS

    stats = factor_summary(records)
    if not stats:
        return ""
    names = {"conv": "Conv kernels", "linear": "Linear weights", "bias": "Biases"}
    lines = [
        "| Optimizer | Layer kind | Units | At floor (%) | Mean factor | 10% quantile | Median | 90% quantile |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for opt in OPTIMIZERS:
        for kind in LAYER_KINDS:
            row = stats.get((opt, kind))
            if row is None:
                continue
            lines.append(
                f"| {opt.upper()} | {names[kind]} | {row['units']} | {100 * row['at_floor']:.1f} | "
                f"{row['mean']:.2f} | {row['q10']:.2f} | {row['q50']:.2f} | {row['q90']:.2f} |"
            )
    n = sorted({row["n"] for row in stats.values()})
    lines += ["", f"Averaged over {'/'.join(map(str, n))} DASH experiment(s) (every seed, experiments 2 and later)."]
    return "\n".join(lines)
