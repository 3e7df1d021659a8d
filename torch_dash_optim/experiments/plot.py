"""The PNG plots: test accuracy, steps and DASH's factor distribution, for people.

:func:`plot_results` stacks panels that stay legible at 400 px width: test accuracy and
training steps against the experiment (mean ± std band over seeds, DASH drawn thick and on
top, one colour and marker per method, SAM dashed), DASH against each other method at the last
experiment (paired per-seed differences with their 95% intervals, from :mod:`.stats`), the
plasticity diagnostics after each experiment (dormant units and feature rank), and the
distribution of DASH's factors per layer kind. :func:`plot_factor_distributions` compares the
factor distributions of several results (for example the default CNN and ``--model mlp``).
"""

from __future__ import annotations

import textwrap
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._extras import install_hint
from .config import OPTIMIZERS
from .methods import KIND_LABELS, LAYER_KINDS
from .stats import LABELS, Comparison, compare
from .summary import method_order, per_experiment

__all__ = ["COLORS", "plot_factor_distributions", "plot_results"]

#: One colour per method (colour-blind-safe Okabe-Ito hues; DASH gets the strongest).
COLORS: dict[str, str] = {
    "cold": "#0072B2",
    "warm": "#999999",
    "warm_rm": "#56B4E9",
    "sp": "#E69F00",
    "l2_init": "#009E73",
    "reset": "#CC79A7",
    "fire": "#8C564B",
    "uniform_global": "#000000",
    "uniform_matched": "#6A3D9A",
    "shuffled": "#B8860B",
    "uniform": "#000000",  # the former name of uniform_global, in older results
    "dash": "#D55E00",
}
_MARKERS = {
    "cold": "o",
    "warm": "v",
    "warm_rm": "^",
    "sp": "s",
    "l2_init": "D",
    "reset": "P",
    "fire": "X",
    "uniform_global": "h",
    "uniform_matched": "H",
    "shuffled": "d",
    "uniform": "h",
    "dash": "*",
}
_KIND_COLORS = {"conv": "#D55E00", "linear": "#0072B2", "bias": "#999999"}


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend; ImportError with the install hint without it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        hint = install_hint("experiments")
        raise ImportError(f'the plot needs matplotlib, from the "experiments" extra: {hint}') from err
    return plt


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population std (ddof=0)."""
    mean = sum(values) / len(values)
    return mean, (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5


def _histogram(records: Iterable[dict[str, Any]], optimizer: str | None = None) -> dict[str, tuple[list[float], float]]:
    """Per kind: the share of units in each of the 20 factor bins, and the share at the floor."""
    counts: dict[str, list[int]] = {}
    floor: dict[str, list[float]] = defaultdict(list)
    for r in records:
        if optimizer is not None and r["optimizer"] != optimizer:
            continue
        for kind, stats in (r.get("dash_factors") or {}).items():
            hist = counts.setdefault(kind, [0] * len(stats["hist"]))
            for i, c in enumerate(stats["hist"]):
                hist[i] += c
            floor[kind].append(stats["at_floor"])
    out = {}
    for kind in LAYER_KINDS:
        if kind in counts:
            total = sum(counts[kind]) or 1
            out[kind] = ([c / total for c in counts[kind]], sum(floor[kind]) / len(floor[kind]))
    return out


def _draw_histogram(ax: Any, hist: dict[str, tuple[list[float], float]], lambd: float | None) -> None:
    """Cumulative share of units against the factor: a jump at the floor, then the spread above it."""
    for kind, (shares, at_floor) in hist.items():
        bins = len(shares)
        xs, ys, total = [0.0], [0.0], 0.0
        for i, share in enumerate(shares):
            total += share
            xs.append((i + 1) / bins)
            ys.append(100 * total)
        ax.step(
            xs,
            ys,
            where="pre",
            color=_KIND_COLORS[kind],
            lw=2.2 if kind == "conv" else 1.5,
            label=f"{KIND_LABELS[kind]}: {100 * at_floor:.0f}% at floor",
        )
    if lambd is not None:
        ax.axvline(lambd, color="k", lw=0.8, ls=":")
    low = 0.0 if lambd is None else max(0.0, lambd - 0.1)
    ax.set(
        xlabel="DASH factor (1 = kept, floor = most shrunk)",
        ylabel="units with factor ≤ x (%)",
        xlim=(low, 1),
        ylim=(0, 102),
    )
    ax.legend(fontsize=8, loc="lower right", frameon=False)


def _draw_differences(axes: Any, comparisons: list[Comparison], max_epochs: int | None) -> None:
    """Per other method: every seed's paired difference (dots) and the mean with its 95% interval."""
    several = len({c.optimizer for c in comparisons}) > 1
    names = [
        LABELS.get(c.other, c.other) + (f" ({c.optimizer.upper()})" if several else "") + (" †cap" if c.capped else "")
        for c in comparisons
    ]
    # keep the accuracy axis on the close methods (as the accuracy panel does); name the outliers
    sizes = sorted(abs(c.accuracy.mean) for c in comparisons)
    median = sizes[len(sizes) // 2]
    far = [abs(c.accuracy.mean) > max(15.0, 5 * median) for c in comparisons]
    near = [v for c, f in zip(comparisons, far, strict=True) if not f for v in (*c.points, c.accuracy.low or 0.0,
                                                                               c.accuracy.high or 0.0, 0.0)]
    for y, (c, f) in enumerate(zip(comparisons, far, strict=True)):
        if f and near:
            names[y] += f"\n(off axis: {c.accuracy.mean:+.0f})".replace("-", "−")
    for ax, values, interval, null, xlabel in (
        (axes[0], "points", "accuracy", 0.0, "DASH − other, test acc. (points)"),
        (axes[1], "step_ratios", "steps", 1.0, "DASH / other, steps"),
    ):
        for y, c in enumerate(comparisons):
            color = COLORS.get(c.other, "0.3")
            ax.plot(getattr(c, values), [y] * len(c.seeds), "o", ms=3.5, color=color, alpha=0.45)
            iv = getattr(c, interval)
            if iv.low is not None:
                ax.plot([iv.low, iv.high], [y, y], "-", color=color, lw=2.2)
            ax.plot([iv.mean], [y], "|", ms=12, mew=2.5, color=color)
        ax.axvline(null, color="k", lw=0.8, ls=":")
        ax.set(xlabel=xlabel, ylim=(len(comparisons) - 0.4, -0.6))
        if null == 0.0 and any(far) and near:
            low, high = min(near), max(near)
            pad = 0.08 * (high - low) + 0.1
            ax.set_xlim(low - pad, high + pad)
        ax.set_yticks(range(len(comparisons)))
        ax.grid(alpha=0.3, axis="x")
    axes[0].set_yticklabels(names, fontsize=8)
    axes[1].set_yticklabels([])
    axes[0].set_title("last experiment: seeds (dots),\nmean with 95% interval (bar)", fontsize=8.5, loc="left")


def plot_results(
    records: Iterable[dict[str, Any]],
    path: str | Path,
    title: str = "",
    lambd: float | None = 0.3,
    max_epochs: int | None = None,
    threshold: float | None = None,
) -> Path:
    """Plot test accuracy and steps per experiment, DASH against each other method, and DASH's factors.

    Needs matplotlib (the ``experiments`` extra). Panels stacked so that the figure reads at
    400 px width: test accuracy and training steps, mean ± std over seeds (one line per method
    and optimizer; SGD solid, SAM dashed; DASH thick and on top); when DASH ran beside other
    methods, the paired per-seed differences at the last experiment (test accuracy in points,
    steps as a ratio), each method's mean with its 95% t interval (:func:`.stats.compare`),
    "cap" marking pairs with a run stopped at the epoch cap; when the records hold them, the
    plasticity diagnostics after each experiment (the share of dormant units and the rank of
    the penultimate features, mean over seeds); and, when DASH ran, the cumulative
    distribution of its factors per layer kind (pooled over seeds and experiments).

    Parameters
    ----------
    records:
        The records of :func:`~torch_dash_optim.experiments.run_protocol`.
    path:
        The PNG to write.
    title:
        Figure title.
    lambd:
        DASH's floor, marked in the factor panel (``None``: not marked).
    max_epochs, threshold:
        The protocol's epoch cap and threshold, to mark capped runs (``None``: not marked).

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> recs = [{"method": "warm", "optimizer": "sgd", "seed": 0, "experiment": e,
    ...          "test_acc": 0.5, "steps": 10} for e in (1, 2)]
    >>> plot_results(recs, pathlib.Path(tempfile.mkdtemp()) / "p.png").exists()
    True
    """
    plt = _pyplot()
    records = list(records)
    series: dict[tuple[str, str], dict[int, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        series[(r["method"], r["optimizer"])][int(r["experiment"])].append((100 * r["test_acc"], r["steps"]))
    hist = _histogram([r for r in records if r["method"] == "dash"])
    comparisons = compare(records, "dash", max_epochs, threshold)
    plasticity = {key: per_experiment(records, key) for key in ("dormant", "feature_rank")}
    has_plasticity = any(plasticity.values())
    heights = (
        [2.8, 2.8]
        + ([0.9 + 0.32 * len(comparisons)] if comparisons else [])
        + ([2.3] if has_plasticity else [])
        + ([2.8] if hist else [])
    )
    fig = plt.figure(figsize=(5.2, sum(heights) + 0.8 + 0.6 * len(heights[2:])), dpi=100)
    grid = fig.add_gridspec(len(heights), 2, height_ratios=heights)
    axes = [fig.add_subplot(grid[0, :]), fig.add_subplot(grid[1, :])]
    row = 2
    if comparisons:
        diff_axes = [fig.add_subplot(grid[row, 0]), fig.add_subplot(grid[row, 1])]
        row += 1
    if has_plasticity:
        plasticity_axes = [fig.add_subplot(grid[row, 0]), fig.add_subplot(grid[row, 1])]
        row += 1
    if hist:
        axes.append(fig.add_subplot(grid[row, :]))
    order = method_order(m for m, _o in series)
    keys = sorted(series, key=lambda k: (order.index(k[0]), OPTIMIZERS.index(k[1])))
    several = len({opt for _m, opt in keys}) > 1
    for method, opt in keys:
        by_exp = series[(method, opt)]
        xs = sorted(by_exp)
        is_dash = method == "dash"
        color = COLORS.get(method, "k")
        for ax, col in zip(axes[:2], (0, 1), strict=True):
            stats = [_mean_std([v[col] for v in by_exp[x]]) for x in xs]
            mean = [m for m, _ in stats]
            ax.fill_between(
                xs,
                [m - s for m, s in stats],
                [m + s for m, s in stats],
                color=color,
                alpha=0.22 if is_dash else 0.10,
                lw=0,
                zorder=3 if is_dash else 1,
            )
            ax.plot(
                xs,
                mean,
                "-" if opt == "sgd" else "--",
                color=color,
                lw=2.8 if is_dash else 1.3,
                marker=_MARKERS.get(method, "o"),
                ms=7 if is_dash else 4,
                zorder=4 if is_dash else 2,
                label=LABELS.get(method, method) + (f" ({opt.upper()})" if several else ""),
            )
    _focus(axes[0], series)
    axes[0].set(ylabel="test accuracy (%)")
    axes[1].set(xlabel="experiment (chunks seen)", ylabel="training steps")
    for ax in axes[:2]:
        ax.grid(alpha=0.3)
    for ax in axes[:2]:
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    handles, labels = axes[0].get_legend_handles_labels()
    columns = (2 if max(map(len, labels)) > 20 else 3) if len(labels) > 4 else len(labels)
    fig.legend(
        handles,
        labels,
        loc="upper center",
        ncol=columns,
        fontsize=8.5,
        frameon=False,
        bbox_to_anchor=(0.5, 1.0),
    )
    if comparisons:
        _draw_differences(diff_axes, comparisons, max_epochs)
    if has_plasticity:
        _draw_plasticity(plasticity_axes, plasticity, order)
    if hist:
        _draw_histogram(axes[2], hist, lambd)
        axes[2].set_title("DASH's factors, all seeds and experiments", fontsize=9)
    if title:  # wrapped: the figure is narrow (a phone's width in the docs)
        axes[0].set_title(textwrap.fill(title, 48), fontsize=9)
    rows = -(-len(labels) // columns)
    height = fig.get_figheight()
    fig.tight_layout(rect=(0, 0, 1, 1 - (0.2 * rows + 0.12) / height))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _draw_plasticity(
    axes: Any, plasticity: dict[str, dict[tuple[str, str], dict[int, float]]], order: list[str]
) -> None:
    """Dormant units (%) and feature rank after each experiment: one line per method (mean over seeds)."""
    for ax, key, scale, ylabel in (
        (axes[0], "dormant", 100.0, "dormant units (%)"),
        (axes[1], "feature_rank", 1.0, "feature rank (srank)"),
    ):
        means = plasticity[key]
        for method, opt in sorted(means, key=lambda k: (order.index(k[0]) if k[0] in order else len(order),
                                                        OPTIMIZERS.index(k[1]))):
            by_exp = means[(method, opt)]
            xs = sorted(by_exp)
            is_dash = method == "dash"
            ax.plot(
                xs,
                [scale * by_exp[x] for x in xs],
                "-" if opt == "sgd" else "--",
                color=COLORS.get(method, "k"),
                lw=2.2 if is_dash else 1.1,
                marker=_MARKERS.get(method, "o"),
                ms=5 if is_dash else 3,
                zorder=4 if is_dash else 2,
            )
        if not means:
            ax.text(0.5, 0.5, "not measured", transform=ax.transAxes, ha="center", va="center", color="0.4")
        ax.set(xlabel="experiment", ylabel=ylabel)
        ax.grid(alpha=0.3)
        if key == "dormant" and means and not any(v for m in means.values() for v in m.values()):
            ax.set_ylim(-1, 10)
            ax.text(0.5, 0.55, "no dormant unit", transform=ax.transAxes, ha="center", fontsize=8, color="0.3")
    axes[0].set_title("after each experiment, mean over seeds", fontsize=8.5, loc="left")


def _focus(ax: Any, series: dict[tuple[str, str], dict[int, list[tuple[float, float]]]]) -> None:
    """Keep the accuracy axis on the close methods; name those that fall far below it."""
    means = {
        key: {x: sum(v[0] for v in vals) / len(vals) for x, vals in by_exp.items()} for key, by_exp in series.items()
    }
    best = {x: max(m[x] for m in means.values() if x in m) for m in means.values() for x in m}
    kept = [v for m in means.values() for x, v in m.items() if v >= best[x] - 15]
    if not kept:
        return
    low, high = min(kept), max(kept)
    bottom = low - 0.08 * (high - low) - 1
    lost = [key for key, m in means.items() if any(v < bottom for v in m.values())]
    if not lost:  # every line fits: keep the full axis
        return
    ax.set_ylim(bottom, high + 0.04 * (high - low) + 0.5)
    names = ", ".join(LABELS.get(m, m) for m, _o in lost)
    ax.text(
        0.99, 0.03, f"below the axis: {names}", transform=ax.transAxes, ha="right", va="bottom", fontsize=8, color="0.3"
    )


def plot_factor_distributions(
    groups: Mapping[str, Iterable[dict[str, Any]]], path: str | Path, lambd: float | None = 0.3
) -> Path:
    """Plot DASH's factor distribution per layer kind for several results, one panel each.

    Parameters
    ----------
    groups:
        Panel title -> records (only DASH's are used).
    path:
        The PNG to write.
    lambd:
        DASH's floor, marked in each panel.

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> rec = {"method": "dash", "optimizer": "sgd", "seed": 0, "experiment": 2,
    ...        "dash_factors": {"conv": {"at_floor": 0.5, "hist": [1] * 20}}}
    >>> plot_factor_distributions({"CNN": [rec]}, pathlib.Path(tempfile.mkdtemp()) / "f.png").exists()
    True
    """
    plt = _pyplot()
    groups = {k: [r for r in v if r["method"] == "dash"] for k, v in groups.items()}
    fig, axes = plt.subplots(len(groups), 1, figsize=(5.2, 2.8 * len(groups)), dpi=100, squeeze=False)
    for ax, (name, records) in zip(axes[:, 0], groups.items(), strict=True):
        _draw_histogram(ax, _histogram(records), lambd)
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
