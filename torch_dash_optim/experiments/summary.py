"""The paper's summary table: four columns, mean (std) over seeds, rows = methods, SGD/SAM.

Runs whose last experiment stopped at the epoch cap below the threshold are flagged (†); the
paired comparisons and verdicts come from :mod:`.stats`. Two tables per experiment follow:
the training steps (:func:`steps_markdown`, where a step spike would show) and the plasticity
diagnostics (:func:`diagnostics_markdown`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from .config import OPTIMIZERS
from .loaders import batch_sizes
from .methods import BUILTIN, KIND_LABELS, LAYER_KINDS
from .stats import LABELS, capped

__all__ = [
    "FACTOR_STATS",
    "METRICS",
    "diagnostics_markdown",
    "factor_markdown",
    "factor_summary",
    "method_order",
    "per_run",
    "per_experiment",
    "steps_markdown",
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


def method_order(names: Iterable[str]) -> list[str]:
    """The methods in ``names``: built-in ones in their order, then the others as they come.

    Examples
    --------
    >>> method_order(["dash", "mine", "cold", "dash"])
    ['cold', 'dash', 'mine']
    """
    names = list(dict.fromkeys(names))
    return [m for m in BUILTIN if m in names] + [m for m in names if m not in BUILTIN]


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population std (ddof=0)."""
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


def _cell(stats: dict[str, Any] | None, name: str, is_acc: bool, flag: str = "") -> str:
    """One cell, ``mean (std)`` (accuracy in percent), ``-`` without data."""
    if stats is None:
        return "-"
    mean, std = stats[name]
    if is_acc:
        return f"{100 * mean:.2f} ({100 * std:.2f}){flag}"
    return f"{mean:.0f} ({std:.0f}){flag}"


def _capped_last(
    records: list[dict[str, Any]], max_epochs: int | None, threshold: float | None
) -> dict[tuple[str, str], tuple[int, int]]:
    """Per (method, optimizer): seeds whose last experiment hit the cap, and all seeds."""
    last: dict[tuple[str, str, int], dict[str, Any]] = {}
    for r in records:
        key = (r["method"], r["optimizer"], int(r["seed"]))
        if key not in last or r["experiment"] > last[key]["experiment"]:
            last[key] = r
    out: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for (m, o, _s), r in last.items():
        out[(m, o)][0] += capped(r, max_epochs, threshold)
        out[(m, o)][1] += 1
    return {k: (v[0], v[1]) for k, v in out.items() if v[0]}


def summary_markdown(
    records: Iterable[dict[str, Any]], max_epochs: int | None = None, threshold: float | None = None
) -> str:
    """Return the summary as a markdown table in the paper's shape (SGD and SAM per metric).

    Parameters
    ----------
    records:
        Experiment records, each with ``method``, ``optimizer``, ``seed``, ``experiment``,
        ``test_acc`` and ``steps`` (and ``epochs``, ``train_acc`` to flag capped runs).
    max_epochs, threshold:
        The protocol's epoch cap and threshold: the last-experiment cells of a method whose
        last experiment stopped at the cap below the threshold on some seed get a ``†``
        (``None``: no flags).

    Returns
    -------
    str
        The table: one row per method, a (SGD, SAM) pair of columns per metric, each cell
        ``mean (std)``, and a note on the seeds and the capped runs.

    Examples
    --------
    >>> recs = [{"method": "warm", "optimizer": "sgd", "seed": 0, "experiment": 1,
    ...          "test_acc": 0.5, "steps": 10}]
    >>> print(summary_markdown(recs).splitlines()[2])
    | Warm | 50.00 (0.00) | 10 (0) | 50.00 (0.00) | 10 (0) |
    """
    records = list(records)
    stats = summarize(records)
    flagged = _capped_last(records, max_epochs, threshold)
    methods = method_order(k[0] for k in stats)
    opts = [o for o in OPTIMIZERS if any(k[1] == o for k in stats)]
    header = ["Method"] + [f"{title}, {o.upper()}" for _n, title, _a in METRICS for o in opts]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in methods:
        cells = [
            _cell(stats.get((m, o)), name, is_acc, "†" if name.startswith("last") and (m, o) in flagged else "")
            for name, _t, is_acc in METRICS
            for o in opts
        ]
        lines.append("| " + " | ".join([LABELS.get(m, m)] + cells) + " |")
    seeds = sorted({row["n"] for row in stats.values()})
    lines.append("")
    lines.append(f"Mean (std) over {'/'.join(map(str, seeds))} seed(s); std with ddof=0.")
    if flagged:
        lines[-1] += (
            f" † stopped at the {max_epochs}-epoch cap below {100 * threshold:.1f}% train accuracy at the last "
            "experiment: "
            + ", ".join(
                f"{LABELS.get(m, m)}{f' ({o.upper()})' if len(opts) > 1 else ''} on {n} of {total} seeds"
                for (m, o), (n, total) in sorted(flagged.items(), key=lambda kv: methods.index(kv[0][0]))
            )
            + "; those numbers are the cap's, not the method's."
        )
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
    stats = factor_summary(records)
    if not stats:
        return ""
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
                f"| {opt.upper()} | {KIND_LABELS[kind]} | {row['units']} | {100 * row['at_floor']:.1f} | "
                f"{row['mean']:.2f} | {row['q10']:.2f} | {row['q50']:.2f} | {row['q90']:.2f} |"
            )
    n = sorted({row["n"] for row in stats.values()})
    lines += ["", f"Averaged over {'/'.join(map(str, n))} DASH experiment(s) (every seed, experiments 2 and later)."]
    return "\n".join(lines)


def per_experiment(records: Iterable[dict[str, Any]], key: str) -> dict[tuple[str, str], dict[int, float]]:
    """The mean over seeds of ``record[key]``, per ``(method, optimizer)`` and experiment.

    Records where ``key`` is missing or ``None`` are left out; an experiment none of whose
    records has it is absent.

    Parameters
    ----------
    records:
        Experiment records, each with ``method``, ``optimizer`` and ``experiment``.
    key:
        The record's field, e.g. ``"steps"``, ``"dormant"`` or ``"feature_rank"``.

    Returns
    -------
    dict
        Per ``(method, optimizer)``, per experiment, the mean.

    Examples
    --------
    >>> recs = [{"method": "warm", "optimizer": "sgd", "seed": s, "experiment": 1, "steps": n}
    ...         for s, n in [(0, 10), (1, 20)]]
    >>> per_experiment(recs, "steps")
    {('warm', 'sgd'): {1: 15.0}}
    """
    values: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r.get(key) is not None:
            values[(r["method"], r["optimizer"])][int(r["experiment"])].append(float(r[key]))
    return {k: {x: sum(v) / len(v) for x, v in sorted(by_exp.items())} for k, by_exp in values.items()}


def _per_experiment_table(
    records: list[dict[str, Any]], key: str, cell: Any, first: str = "Method"
) -> tuple[list[str], list[int], list[str]]:
    """Rows of a methods x experiments table of ``per_experiment(records, key)``."""
    means = per_experiment(records, key)
    experiments = sorted({x for by_exp in means.values() for x in by_exp})
    order = method_order(m for m, _o in means)
    opts = [o for o in OPTIMIZERS if any(k[1] == o for k in means)]
    header = [first] + [str(x) for x in experiments]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in order:
        for o in opts:
            if (m, o) not in means:
                continue
            label = LABELS.get(m, m) + (f" ({o.upper()})" if len(opts) > 1 else "")
            row = [cell(means[(m, o)][x]) if x in means[(m, o)] else "-" for x in experiments]
            lines.append("| " + " | ".join([label, *row]) + " |")
    return lines, experiments, opts


def steps_markdown(records: Iterable[dict[str, Any]], batch_size: int | None = None) -> str:
    """Return the mean training steps of each method at each experiment, as a markdown table.

    A method whose training needs many more epochs at one experiment than at its neighbours
    shows a spike in its row. The steps are epochs times batches per epoch; with
    ``batch_size``, a first row gives the batches per epoch of each experiment (the balanced
    rule of :func:`~torch_dash_optim.experiments.loaders.batch_sizes`: ``ceil(n / B)``
    batches of ``n // k`` or ``n // k + 1`` examples) and the smallest batch.

    Parameters
    ----------
    records:
        Experiment records, each with ``method``, ``optimizer``, ``experiment``, ``steps``
        (and ``num_train`` for the first row).
    batch_size:
        The protocol's batch size (``None``: no first row).

    Returns
    -------
    str
        The table and a note, or ``''`` without records.

    Examples
    --------
    >>> recs = [{"method": "warm", "optimizer": "sgd", "seed": 0, "experiment": e, "steps": s,
    ...          "num_train": 200 * e} for e, s in [(1, 20), (2, 30)]]
    >>> print(steps_markdown(recs, 128).splitlines()[2])
    | Batches per epoch (smallest batch) | 2 (100) | 4 (100) |
    >>> print(steps_markdown(recs, 128).splitlines()[3])
    | Warm | 20 | 30 |
    """
    records = list(records)
    lines, experiments, _opts = _per_experiment_table(records, "steps", lambda v: f"{v:.0f}")
    if not experiments:
        return ""
    if batch_size is not None:
        sizes = {int(r["experiment"]): int(r["num_train"]) for r in records if r.get("num_train") is not None}
        if sizes:
            cells = []
            for x in experiments:
                split = batch_sizes(sizes[x], batch_size) if x in sizes else []
                cells.append(f"{len(split)} ({split[-1]})" if split else "-")
            lines.insert(2, "| " + " | ".join(["Batches per epoch (smallest batch)", *cells]) + " |")
    seeds = len({r["seed"] for r in records})
    note = f"Mean over {seeds} seed(s) of the optimizer steps at each experiment (columns: experiment)."
    if batch_size is not None:
        note += (
            f" Batches are balanced: an epoch of n examples takes ceil(n / {batch_size}) batches of n // k or "
            "n // k + 1 examples, so none holds less than half a batch."
        )
    return "\n".join([*lines, "", note])


def diagnostics_markdown(records: Iterable[dict[str, Any]], tau: float | None = None) -> str:
    """Return the plasticity diagnostics of each method after each experiment, as markdown.

    The rank of the penultimate features (Kumar et al.'s srank, δ = 0.01) and the share of
    dormant units (ReDo's τ-dormant), both measured after training on a fixed subsample of
    the seed's training set (see :func:`~torch_dash_optim.experiments.run_protocol`), mean
    over seeds. A dormant share that is zero everywhere is said in one sentence.

    Parameters
    ----------
    records:
        Experiment records with ``feature_rank`` and ``dormant`` (others are left out).
    tau:
        The dormancy threshold, for the note (``None``: not named).

    Returns
    -------
    str
        The tables, or ``''`` when no record has diagnostics.

    Examples
    --------
    >>> recs = [{"method": "warm", "optimizer": "sgd", "seed": 0, "experiment": e, "feature_rank": r,
    ...          "dormant": 0.0} for e, r in [(1, 60), (2, 50)]]
    >>> print(diagnostics_markdown(recs).splitlines()[2])
    | Warm | 60.0 | 50.0 |
    """
    records = list(records)
    ranks, experiments, _ = _per_experiment_table(records, "feature_rank", lambda v: f"{v:.1f}", "Feature rank")
    dormant, dormant_experiments, _ = _per_experiment_table(
        records, "dormant", lambda v: f"{100 * v:.1f}", "Dormant units (%)"
    )
    if not experiments and not dormant_experiments:
        return ""
    seeds = len({r["seed"] for r in records})
    parts = []
    if experiments:
        parts += [*ranks, ""]
    shares = [r["dormant"] for r in records if r.get("dormant") is not None]
    named = f" (τ = {tau:g})" if tau is not None else ""
    if shares and any(v > 0 for v in shares):
        parts += [*dormant, ""]
    elif shares:
        parts.append(f"No unit was dormant{named} after any experiment of any method and seed.\n")
    parts.append(
        f"Mean over {seeds} seed(s), measured after each experiment's training (columns: experiment) on a fixed "
        "subsample of the seed's training set: the rank of the penultimate features (srank, δ = 0.01) and the "
        f"share of dormant units{named}."
    )
    return "\n".join(parts)
