"""The PNG plot: test accuracy and steps against the experiment number, per method."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .config import METHODS, OPTIMIZERS
from .summary import LABELS

__all__ = ["plot_results"]


def plot_results(records: Iterable[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Plot mean ± std over seeds of test accuracy and steps per experiment; save a PNG.

    Needs matplotlib (``pip install torch-dash-optim[experiments]``). One line per method and
    optimizer (SGD solid, SAM dashed).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> recs = [{"method": "warm", "optimizer": "sgd", "seed": 0, "experiment": e,
    ...          "test_acc": 0.5, "steps": 10} for e in (1, 2)]
    >>> plot_results(recs, pathlib.Path(tempfile.mkdtemp()) / "p.png").exists()
    True
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("the plot needs matplotlib: pip install torch-dash-optim[experiments]") from err
    series: dict[tuple[str, str], dict[int, list[tuple[float, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for r in records:
        series[(r["method"], r["optimizer"])][int(r["experiment"])].append((100 * r["test_acc"], r["steps"]))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=90)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (method, opt), by_exp in sorted(
        series.items(), key=lambda kv: (METHODS.index(kv[0][0]), OPTIMIZERS.index(kv[0][1]))
    ):
        xs = sorted(by_exp)
        color = colors[METHODS.index(method) % len(colors)]
        style = "-" if opt == "sgd" else "--"
        for ax, col in zip(axes, (0, 1), strict=True):
            vals = [[v[col] for v in by_exp[x]] for x in xs]
            mean = [sum(v) / len(v) for v in vals]
            std = [(sum((a - m) ** 2 for a in v) / len(v)) ** 0.5 for v, m in zip(vals, mean, strict=True)]
            ax.plot(xs, mean, style, color=color, label=f"{LABELS[method]} ({opt.upper()})", lw=1.4)
            ax.fill_between(
                xs,
                [m - s for m, s in zip(mean, std, strict=True)],
                [m + s for m, s in zip(mean, std, strict=True)],
                color=color,
                alpha=0.12,
                lw=0,
            )
    axes[0].set(xlabel="experiment (chunks seen)", ylabel="test accuracy (%)")
    axes[1].set(xlabel="experiment (chunks seen)", ylabel="training steps")
    axes[1].legend(fontsize=7, loc="upper left")
    for ax in axes:
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
