"""The summary figure of the benchmarks page, drawn from a committed results folder.

Usage (from the repository root)::

    python -m benchmarks.plot [results/benchmarks-cpu] [docs/figures/benchmarks-cpu.png]

One panel, readable at 400 px: for each model, the time of one gradient pass as a multiple of
a plain forward and backward pass, for ``on_new_data`` and for the authors' gathering, with
the 1.05 goal marked. The PNG records the fingerprint of the ``results.json`` it was drawn
from (text chunk ``Source``), so a test can tell a stale figure.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .publish import CASE_NAMES, CPU, ROOT, fingerprint
from .results import Run

__all__ = ["FIGURE", "draw"]

#: Where the docs expect the figure.
FIGURE = ROOT / "docs" / "figures" / "benchmarks-cpu.png"


def draw(folder: Path | None = None, path: Path | None = None) -> Path:
    """Draw the figure of ``folder``'s run (default: the committed CPU run) into ``path``; return ``path``."""
    folder = folder or CPU
    path = path or FIGURE
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Run.load(folder)
    cases = [c for c in CASE_NAMES if any(r.key == f"gather/{c}/ratio" for r in run.results)]
    ours = [run.get(f"gather/{c}/ratio").value for c in cases]
    authors = [run.get(f"gather/{c}/naive_over_floor").value for c in cases]
    labels = [CASE_NAMES[c].replace(" (CIFAR)", "") for c in cases]
    plt.rcParams.update({"font.size": 13})
    fig, ax = plt.subplots(figsize=(6.0, 3.6), dpi=110)
    y = range(len(cases))
    h = 0.38
    ax.barh([i + h / 2 for i in y], authors, h, color="#b0b0b0", label="authors' gathering")
    ax.barh([i - h / 2 for i in y], ours, h, color="#d62728", label="on_new_data (ours)")
    for i, (a, o) in enumerate(zip(authors, ours, strict=True)):
        ax.text(a + 0.01, i + h / 2, f"{a:.2f}", va="center", fontsize=12)
        ax.text(o + 0.01, i - h / 2, f"{o:.2f}", va="center", fontsize=12, color="#d62728", fontweight="bold")
    ax.axvline(1.0, color="black", lw=1)
    ax.axvline(1.05, color="black", lw=1, ls="--")
    ax.text(1.05, len(cases) - 0.45, " goal 1.05", fontsize=11, va="bottom")
    ax.set_yticks(list(y), labels)
    ax.invert_yaxis()
    ax.set_xlim(0.9, max(authors + ours) * 1.12)
    ax.set_xlabel("time / plain forward+backward")
    ax.legend(loc="lower right", fontsize=11, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Source": fingerprint(folder)})
    plt.close(fig)
    return path


if __name__ == "__main__":
    args = sys.argv[1:]
    folder = Path(args[0]) if args else CPU
    print(draw(folder, Path(args[1]) if len(args) > 1 else FIGURE))
