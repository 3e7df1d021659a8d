"""The figure of a text run: held-out loss per stage per method, and DASH's paired differences at the last stage."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..stats import LEVEL
from .compare import compare_last
from .settings import LABELS
from .tables import stage_table

__all__ = ["figure_title", "plot_text"]


def figure_title(python: str, chunks: int, seeds: int) -> str:
    """The figure's title, on two lines.

    Examples
    --------
    >>> print(figure_title("3.11.7", 4, 5))
    A byte-level transformer on Python 3.11.7's standard library
    4 chunks, 5 seeds
    """
    return f"A byte-level transformer on Python {python}'s standard library\n{chunks} chunks, {seeds} seeds"


def plot_text(records: Sequence[dict[str, Any]], path: Path | str, title: str = "") -> Path:
    """Draw held-out loss per stage per method (mean ± std over seeds) and DASH's paired differences.

    Needs matplotlib (the ``experiments`` extra).

    Parameters
    ----------
    records:
        Records of :func:`run_text`.
    path:
        The PNG to write.
    title:
        A title over the figure.

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from torch_dash_optim.experiments.text import QUICK, run_text
    >>> recs = run_text(QUICK, seeds=[0, 1], methods=["cold", "dash"])
    >>> plot_text(recs, Path(tempfile.mkdtemp()) / "text.png").name
    'text.png'
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        from ..._extras import install_hint

        raise ImportError(f'the plot needs matplotlib, from the "experiments" extra: {install_hint("experiments")}'
                          ) from err
    from ..plot import COLORS

    markers = {"cold": "o", "warm": "v", "sp": "s", "dash": "*"}
    table = stage_table(records)
    comparisons = compare_last(records)
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(6.2, 7.0), gridspec_kw={"height_ratios": [3, 2]})
    for m, rows in sorted(table.items(), key=lambda kv: kv[0] == "dash"):
        xs = [row["train_bytes"] / 1024 for row in rows]
        mean = [row["heldout_loss"][0] for row in rows]
        sd = [row["heldout_loss"][1] for row in rows]
        thick = m == "dash"
        ax.plot(xs, mean, color=COLORS.get(m, "k"), marker=markers.get(m, "o"), lw=2.6 if thick else 1.5,
                ms=9 if thick else 5, label=LABELS.get(m, m), zorder=3 if thick else 2)
        ax.fill_between(xs, [a - b for a, b in zip(mean, sd)], [a + b for a, b in zip(mean, sd)],
                        color=COLORS.get(m, "k"), alpha=0.12, lw=0)
    stages = sorted({row["train_bytes"] / 1024 for rows in table.values() for row in rows})
    ax.set_xticks(stages, [f"{x:g}" for x in stages])
    ax.set(xlabel="training text so far (KiB), one point per stage", ylabel="held-out loss (nats per byte)")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=9)
    if title:
        ax.set_title(title, fontsize=10)
    for i, c in enumerate(comparisons):
        color = COLORS.get(c.other, "k")
        bx.scatter(c.differences, [i] * len(c.differences), color=color, alpha=0.8, s=24, zorder=4)
        iv = c.interval
        if iv.low is not None:
            bx.plot([iv.low, iv.high], [i, i], color="k", lw=2, zorder=3)
        bx.plot([iv.mean], [i], marker="|", color="k", ms=14, mew=2, zorder=3)
    bx.axvline(0, color="k", lw=0.8, ls=":")
    bx.set_ylim(len(comparisons) - 0.5, -0.5)
    bx.set_yticks(range(len(comparisons)), [LABELS.get(c.other, c.other) for c in comparisons])
    bx.set_title(f"DASH minus each method at the last stage, paired by seed\n(dots: seeds; bar: {100 * LEVEL:.0f}% t "
                 "interval)", fontsize=9)
    bx.set(xlabel="held-out loss difference (nats per byte); < 0: DASH better")
    bx.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

