"""Redraw the published figures in ``docs/_static/`` from the committed results folders.

Run from the repository root::

    python -m scripts.render.figures

It draws ``warmstart-results.png`` (the default run, see :data:`FIGURES`),
``warmstart-mnist.png`` (the run on real MNIST digits) and ``warmstart-factors.png`` (DASH's
factors in the runs of :data:`FIGURES` ``["factors"]``) with
:mod:`torch_dash_optim.experiments.plot`, and prints the paths written.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from torch_dash_optim.experiments.plot import plot_factor_distributions, plot_results

from .experiments import describe
from .format import ROOT, load

__all__ = ["FIGURES", "STATIC", "draw_figures", "main"]

#: The folder the docs take their figures from.
STATIC = ROOT / "docs" / "_static"
#: The folders of the published figures: the default run, the run on real digits, and the runs
#: whose factors are compared.
FIGURES: dict[str, Any] = {
    "results": "experiments-features-patchcnn",
    "mnist": "experiments-mnist-cnn2d",
    "factors": {
        "Patch CNN (features, the default)": "experiments-features-patchcnn",
        "2-D CNN (MNIST, real digits)": "experiments-mnist-cnn2d",
        "1-D CNN (MNIST-1D)": "experiments-mnist1d-cnn1d",
    },
}


def _results(name: str, path: Path) -> Path:
    """Draw one folder's results figure (:func:`plot_results`) to ``path``."""
    data = load(name)
    protocol = data["protocol"]
    return plot_results(
        data["records"],
        path,
        title=describe(data),
        lambd=protocol["dash_lambd"],
        max_epochs=protocol["max_epochs"],
        threshold=protocol["threshold"],
    )


def draw_figures(folder: Path | None = None) -> list[Path]:
    """Draw ``warmstart-results.png``, ``warmstart-mnist.png`` and ``warmstart-factors.png`` (see :data:`FIGURES`).

    ``folder`` defaults to :data:`STATIC`; returns the paths written.

    Examples
    --------
    >>> import tempfile
    >>> [p.name for p in draw_figures(Path(tempfile.mkdtemp()))]
    ['warmstart-results.png', 'warmstart-mnist.png', 'warmstart-factors.png']
    """
    folder = folder or STATIC
    lambd = load(FIGURES["results"])["protocol"]["dash_lambd"]
    return [
        _results(FIGURES["results"], folder / "warmstart-results.png"),
        _results(FIGURES["mnist"], folder / "warmstart-mnist.png"),
        plot_factor_distributions(
            {title: load(name)["records"] for title, name in FIGURES["factors"].items()},
            folder / "warmstart-factors.png",
            lambd=lambd,
        ),
    ]


def main() -> int:
    """``python -m scripts.render.figures``: redraw the published figures and print their paths."""
    for path in draw_figures():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
