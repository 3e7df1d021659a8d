"""The published experiment numbers: tables and sentences rendered from committed results folders.

README.md and ``docs/experiments.rst`` quote results only inside generated blocks whose
renderer is one of the functions here (see ``scripts/published.py``); each reads a results
folder under ``results/`` that one ``dash-warmstart`` command regenerates
(:data:`FOLDERS`), and returns Markdown (``fmt="md"``) or reStructuredText (``fmt="rst"``).
``python scripts/published.py --write`` re-renders the blocks, and a test fails when a block
differs from what its folder renders. ``python -m torch_dash_optim.experiments.publish``
redraws the figures in ``docs/_static/`` (``warmstart-results.png``, the default run's plot,
and ``warmstart-factors.png``, DASH's factors on the CNN and on the MLP).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import METHODS
from .provenance import read_provenance
from .summary import LABELS, factor_summary, per_run, summarize

__all__ = [
    "FOLDERS",
    "RESULTS",
    "all_methods_table",
    "commands",
    "draw_figures",
    "extra_seeds_table",
    "factor_table",
    "load",
    "mlp_table",
    "provenance_note",
    "results_sentence",
    "results_table",
    "seed_table",
]

#: The repository's results folder.
RESULTS = Path(__file__).resolve().parents[2] / "results"

#: Each published folder and the one command that regenerates it (run from the repository root).
FOLDERS: dict[str, str] = {
    "experiments-mnist1d-cnn1d": "dash-warmstart --out results/experiments-mnist1d-cnn1d",
    "experiments-mnist1d-cnn1d-all": "dash-warmstart --methods all --out results/experiments-mnist1d-cnn1d-all",
    "experiments-mnist1d-mlp": (
        "dash-warmstart --model mlp --methods cold,sp,dash --out results/experiments-mnist1d-mlp"
    ),
    "experiments-mnist1d-cnn1d-seeds": (
        "dash-warmstart --seeds 3,4,5 --methods cold,warm,sp,dash --out results/experiments-mnist1d-cnn1d-seeds"
    ),
}
_EXTRA_SEEDS = "experiments-mnist1d-cnn1d-seeds"
_DEFAULT = "experiments-mnist1d-cnn1d"
_KINDS = {"conv": "Conv kernels", "linear": "Linear weights", "bias": "Biases"}


def load(name: str, root: Path | None = None) -> dict[str, Any]:
    """Return a results folder's ``experiments.json`` plus its ``provenance`` entries.

    Parameters
    ----------
    name:
        The folder's name under ``root``, e.g. one of :data:`FOLDERS`.
    root:
        The folder holding the results folders; defaults to :data:`RESULTS`.

    Returns
    -------
    dict of str to Any
        The parsed ``experiments.json`` (``setup``, ``protocol``, ``records``, ...) with the
        folder's provenance records under ``"provenance"``.

    Raises
    ------
    FileNotFoundError
        If the folder has no ``experiments.json``; the message names the command to run.

    Examples
    --------
    >>> load("experiments-mnist1d-cnn1d")["setup"]["model"]
    'cnn1d'
    """
    folder = (root or RESULTS) / name
    path = folder / "experiments.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing; regenerate it with: {FOLDERS.get(name, 'dash-warmstart --out ' + str(folder))}"
        )
    data = json.loads(path.read_text(encoding="utf-8"))
    data["provenance"] = read_provenance(folder)
    return data


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], fmt: str, caption: str = "") -> str:
    if fmt == "md":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    if fmt != "rst":
        raise ValueError(f"fmt={fmt!r} must be 'md' or 'rst'")
    lines = [f".. list-table:: {caption}".rstrip(), "   :header-rows: 1", ""]
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {cell}" for cell in row[1:]]
    return "\n".join(lines)


def _pm(stats: tuple[float, float], acc: bool) -> str:
    mean, std = stats
    return f"{100 * mean:.2f} ± {100 * std:.2f}" if acc else f"{mean:.0f} ± {std:.0f}"


def _code(text: str, fmt: str) -> str:
    return f"``{text}``" if fmt == "rst" else f"`{text}`"


def _seeds(records: list[dict[str, Any]]) -> list[int]:
    return sorted({int(r["seed"]) for r in records})


def _method_table(name: str, fmt: str, caption: str) -> str:
    data = load(name)
    stats = summarize(data["records"])
    methods = [m for m in METHODS if (m, "sgd") in stats]
    header = ["Method", "Test acc, last (%)", "Steps, last", "Test acc, mean (%)", "Steps, mean"]
    rows = []
    for m in methods:
        row = stats[(m, "sgd")]
        label = f"**{LABELS[m]}**" if m == "dash" else LABELS[m]
        rows.append(
            [
                label,
                _pm(row["last_acc"], True),
                _pm(row["last_steps"], False),
                _pm(row["avg_acc"], True),
                _pm(row["avg_steps"], False),
            ]
        )
    seeds = ", ".join(map(str, _seeds(data["records"])))
    note = (
        f"Mean ± std over seeds {seeds} (std with ddof=0). *last*: at the last experiment (all "
        f"{data['protocol']['num_chunks']} chunks); *mean*: averaged over the experiments."
    )
    capped = _capped(data)
    if capped:
        note += (
            f" Stopped by the {data['protocol']['max_epochs']}-epoch cap before reaching "
            f"{100 * data['protocol']['threshold']:.1f}% train accuracy: "
            + ", ".join(f"{LABELS[m]} in {n} of {total} experiments" for m, (n, total) in capped.items())
            + "; their step counts are the cap's."
        )
    else:
        note += f" No experiment reached the {data['protocol']['max_epochs']}-epoch cap."
    if fmt == "rst":
        note = note.replace("*last*", "**last**").replace("*mean*", "**mean**")
    return _table(header, rows, fmt, caption) + "\n\n" + note


def _capped(data: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """Per method, experiments that ended at the epoch cap below the threshold, and all of them."""
    cap, threshold = data["protocol"]["max_epochs"], data["protocol"]["threshold"]
    out = {}
    for m in METHODS:
        rows = [r for r in data["records"] if r["method"] == m and r["optimizer"] == "sgd"]
        n = sum(1 for r in rows if r["epochs"] >= cap and r["train_acc"] < threshold)
        if n:
            out[m] = (n, len(rows))
    return out


def results_table(fmt: str) -> str:
    """The default run's table (``dash-warmstart``: MNIST-1D, CNN, 5 methods, 3 seeds).

    Parameters
    ----------
    fmt:
        ``"md"`` for Markdown (README.md) or ``"rst"`` for reStructuredText (the docs).

    Returns
    -------
    str
        The table, followed by a paragraph on the seeds, the two columns and the epoch cap.

    Raises
    ------
    FileNotFoundError
        If a results folder it reads has no ``experiments.json``; the message names the
        command that regenerates it.
    ValueError
        If ``fmt`` is neither ``"md"`` nor ``"rst"``.

    Examples
    --------
    >>> print(results_table("md").splitlines()[0])
    | Method | Test acc, last (%) | Steps, last | Test acc, mean (%) | Steps, mean |
    """
    return _method_table(_DEFAULT, fmt, "The default run: MNIST-1D, 1-D CNN, SGD")


def all_methods_table(fmt: str) -> str:
    """The table of every method (``--methods all``) on the default setting.

    Parameters
    ----------
    fmt:
        ``"md"`` for Markdown (README.md) or ``"rst"`` for reStructuredText (the docs).

    Returns
    -------
    str
        The table, followed by a paragraph on the seeds, the two columns and the epoch cap.

    Raises
    ------
    FileNotFoundError
        If a results folder it reads has no ``experiments.json``; the message names the
        command that regenerates it.
    ValueError
        If ``fmt`` is neither ``"md"`` nor ``"rst"``.

    Examples
    --------
    >>> "| Last-layer reset |" in all_methods_table("md")
    True
    """
    return _method_table("experiments-mnist1d-cnn1d-all", fmt, "Every method: MNIST-1D, 1-D CNN, SGD")


def mlp_table(fmt: str) -> str:
    """The ``--model mlp`` comparison (cold, S&P, DASH).

    Parameters
    ----------
    fmt:
        ``"md"`` for Markdown (README.md) or ``"rst"`` for reStructuredText (the docs).

    Returns
    -------
    str
        The table, followed by a paragraph on the seeds, the two columns and the epoch cap.

    Raises
    ------
    FileNotFoundError
        If a results folder it reads has no ``experiments.json``; the message names the
        command that regenerates it.
    ValueError
        If ``fmt`` is neither ``"md"`` nor ``"rst"``.

    Examples
    --------
    >>> "| **DASH** |" in mlp_table("md")
    True
    """
    return _method_table("experiments-mnist1d-mlp", fmt, "MNIST-1D, MLP 256x256, SGD")


def extra_seeds_table(fmt: str) -> str:
    """The table of the extra seeds (3, 4, 5) of the default setting, run without FIRE.

    Parameters
    ----------
    fmt:
        ``"md"`` for Markdown (README.md) or ``"rst"`` for reStructuredText (the docs).

    Returns
    -------
    str
        The table, followed by a paragraph on the seeds, the two columns and the epoch cap.

    Raises
    ------
    FileNotFoundError
        If a results folder it reads has no ``experiments.json``; the message names the
        command that regenerates it.
    ValueError
        If ``fmt`` is neither ``"md"`` nor ``"rst"``.

    Examples
    --------
    >>> "seeds 3, 4, 5" in extra_seeds_table("md")
    True
    """
    return _method_table(_EXTRA_SEEDS, fmt, "Seeds 3 to 5: MNIST-1D, 1-D CNN, SGD")


def _last(records: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, float]]:
    return {(m, s): v for (m, _o, s), v in per_run(r for r in records if r["optimizer"] == "sgd").items()}


def results_sentence(fmt: str) -> str:
    """One sentence with the default run's headline numbers: DASH against cold, S&P and FIRE.

    Parameters
    ----------
    fmt:
        ``"md"`` for Markdown (README.md) or ``"rst"`` for reStructuredText (the docs).

    Returns
    -------
    str
        The sentence (the DASH figure in bold for ``"md"`` and ``"rst"``).

    Raises
    ------
    FileNotFoundError
        If a results folder it reads has no ``experiments.json``; the message names the
        command that regenerates it.

    Examples
    --------
    >>> results_sentence("md").startswith("At the last experiment")
    True
    """
    records = load(_DEFAULT)["records"]
    stats = summarize(records)

    def acc(m: str) -> str:
        return f"{100 * stats[(m, 'sgd')]['last_acc'][0]:.2f}%"

    steps = {m: stats[(m, "sgd")]["last_steps"][0] for m in ("cold", "dash")}
    fewer = 100 * (1 - steps["dash"] / steps["cold"])
    more_or_fewer = f"{fewer:.0f}% fewer" if fewer >= 0 else f"{-fewer:.0f}% more"
    bold = "**" if fmt in ("md", "rst") else ""
    return (
        f"At the last experiment (mean of {len(_seeds(records))} seeds), {bold}DASH reaches {acc('dash')}{bold} "
        f"test accuracy, against {acc('cold')} for a cold start, {acc('warm')} for a warm start, "
        f"{acc('sp')} for Shrink & Perturb and {acc('fire')} for FIRE, in {more_or_fewer} training steps than "
        f"the cold start ({steps['dash']:.0f} vs {steps['cold']:.0f})."
    )


def seed_table(fmt: str) -> str:
    """Per seed, DASH's last-experiment accuracy minus the others', in the default run and the extra seeds.

    Parameters
    ----------
    fmt:
        ``"md"`` for Markdown (README.md) or ``"rst"`` for reStructuredText (the docs).

    Returns
    -------
    str
        The table, followed by a paragraph that counts DASH's wins against each method.

    Raises
    ------
    FileNotFoundError
        If a results folder it reads has no ``experiments.json``; the message names the
        command that regenerates it.
    ValueError
        If ``fmt`` is neither ``"md"`` nor ``"rst"``.

    Examples
    --------
    >>> seed_table("md").splitlines()[0]
    '| Seed | DASH (%) | DASH − cold | DASH − warm | DASH − S&P | DASH − FIRE |'
    """
    records = list(load(_DEFAULT)["records"])
    if (RESULTS / _EXTRA_SEEDS / "experiments.json").exists():
        records += load(_EXTRA_SEEDS)["records"]
    last = _last(records)
    seeds = sorted({s for (_m, s) in last if ("dash", s) in last})
    header = ["Seed", "DASH (%)", "DASH − cold", "DASH − warm", "DASH − S&P", "DASH − FIRE"]
    rows, wins = [], {"cold": 0, "warm": 0, "sp": 0, "fire": 0}
    for s in seeds:
        dash = last[("dash", s)]["last_acc"]
        row = [str(s), f"{100 * dash:.2f}"]
        for m in ("cold", "warm", "sp", "fire"):
            if (m, s) in last:
                diff = 100 * (dash - last[(m, s)]["last_acc"])
                wins[m] += diff > 0
                row.append(f"{diff:+.2f}")
            else:
                row.append("n/a")
        rows.append(row)
    counts = {m: sum(1 for s in seeds if (m, s) in last) for m in wins}
    mean = {
        m: sum(100 * (last[("dash", s)]["last_acc"] - last[(m, s)]["last_acc"]) for s in seeds if (m, s) in last)
        / max(counts[m], 1)
        for m in wins
    }
    extra = [s for s in seeds if ("fire", s) not in last]
    note = (
        f"DASH's test accuracy at the last experiment minus the other method's, in points, per seed "
        f"({len(seeds)} seeds"
        + (f"; seeds {', '.join(map(str, extra))} were run without FIRE" if extra else "")
        + "). DASH is ahead of "
        + ", ".join(
            f"{name} in {wins[m]} of {counts[m]} seeds (mean difference {mean[m]:+.2f})"
            for m, name in (("cold", "cold"), ("warm", "warm"), ("sp", "Shrink & Perturb"), ("fire", "FIRE"))
        )
        + "."
    )
    return _table(header, rows, fmt, "DASH against the others, seed by seed") + "\n\n" + note


def factor_table(fmt: str) -> str:
    """DASH's factors per layer kind on the default CNN and on the MLP: share at the floor, quantiles.

    Parameters
    ----------
    fmt:
        ``"md"`` for Markdown (README.md) or ``"rst"`` for reStructuredText (the docs).

    Returns
    -------
    str
        The table, followed by a paragraph that explains its columns.

    Raises
    ------
    FileNotFoundError
        If a results folder it reads has no ``experiments.json``; the message names the
        command that regenerates it.
    ValueError
        If ``fmt`` is neither ``"md"`` nor ``"rst"``.

    Examples
    --------
    >>> "| 1-D CNN | Conv kernels |" in factor_table("md")
    True
    """
    header = ["Model", "Layer kind", "Units", "At floor (%)", "10%", "Median", "90%"]
    rows = []
    for label, name in (("1-D CNN", _DEFAULT), ("MLP", "experiments-mnist1d-mlp")):
        data = load(name)
        stats = factor_summary(r for r in data["records"] if r["optimizer"] == "sgd")
        for kind in _KINDS:
            row = stats.get(("sgd", kind))
            if row is not None:
                rows.append(
                    [
                        label,
                        _KINDS[kind],
                        str(row["units"]),
                        f"{100 * row['at_floor']:.1f}",
                        f"{row['q10']:.2f}",
                        f"{row['q50']:.2f}",
                        f"{row['q90']:.2f}",
                    ]
                )
    protocol = load(_DEFAULT)["protocol"]
    note = (
        f"DASH's factors at each new chunk, per layer kind: the number of units, the share at the floor "
        f"λ = {protocol['dash_lambd']}, and the 10%, 50% and 90% quantiles of the factors (averaged over "
        f"seeds and experiments 2 to {protocol['num_chunks']}). A unit is a conv kernel slice (one output "
        "channel's weights on one input channel), a Linear row, or a bias."
    )
    return _table(header, rows, fmt, "DASH's factors: CNN against MLP") + "\n\n" + note


def provenance_note(fmt: str) -> str:
    """Which build, machine and commit produced the published folders, and their commands.

    Parameters
    ----------
    fmt:
        ``"md"`` for Markdown (README.md) or ``"rst"`` for reStructuredText (the docs).

    Returns
    -------
    str
        A bulleted list, one item per published folder that exists.

    Raises
    ------
    FileNotFoundError
        If a results folder it reads has no ``experiments.json``; the message names the
        command that regenerates it.

    Examples
    --------
    >>> "torch " in provenance_note("md")
    True
    """
    lines = []
    for name, command in FOLDERS.items():
        if not (RESULTS / name / "experiments.json").exists():
            continue
        entries = load(name)["provenance"]
        last = entries[-1] if entries else {}
        commit = (last.get("commit") or "unknown")[:10] + (" with uncommitted changes" if last.get("dirty") else "")
        cpu = sum(r.get("cpu_seconds") or 0.0 for r in load(name)["records"])
        lines.append(
            f"{_code('results/' + name, fmt)}: {_code(command, fmt)}; torch {last.get('torch', '?')}, Python "
            f"{last.get('python', '?')}, {last.get('cpu', '?')} ({last.get('cpu_count', '?')} cores), code at "
            f"{commit}; {cpu / 60:.0f} min of CPU time in all."
        )
    if fmt == "rst":
        return "\n".join(f"* {line}" for line in lines)
    return "\n".join(f"- {line}" for line in lines)


def commands(fmt: str) -> str:
    """A console block with the command of every published folder.

    Parameters
    ----------
    fmt:
        ``"md"`` for Markdown (README.md) or ``"rst"`` for reStructuredText (the docs).

    Returns
    -------
    str
        A ``console`` code block (a fenced block for ``"md"``, a ``code-block`` directive
        for ``"rst"``) with one command per published folder that exists.

    Examples
    --------
    >>> print(commands("md").splitlines()[1])
    $ dash-warmstart --out results/experiments-mnist1d-cnn1d
    """
    body = "\n".join(f"$ {c}" for n, c in FOLDERS.items() if (RESULTS / n / "experiments.json").exists())
    if fmt == "rst":
        return ".. code-block:: console\n\n" + "\n".join(f"   {line}" for line in body.splitlines())
    return "```console\n" + body + "\n```"


def draw_figures(folder: Path | None = None) -> list[Path]:
    """Draw the published figures from the results folders into ``docs/_static/``.

    ``warmstart-results.png`` is the default run's plot (as ``dash-warmstart`` draws it) and
    ``warmstart-factors.png`` compares DASH's factors on the CNN and on the MLP.

    Parameters
    ----------
    folder:
        Where to write the PNG files; defaults to the repository's ``docs/_static/``.

    Returns
    -------
    list of pathlib.Path
        The paths of the two figures written.

    Raises
    ------
    FileNotFoundError
        If a results folder it reads has no ``experiments.json``.

    Examples
    --------
    >>> import tempfile
    >>> [p.name for p in draw_figures(Path(tempfile.mkdtemp()))]
    ['warmstart-results.png', 'warmstart-factors.png']
    """
    from .plot import plot_factor_distributions, plot_results

    folder = folder or RESULTS.parent / "docs" / "_static"
    default = load(_DEFAULT)
    paths = [
        plot_results(
            default["records"],
            folder / "warmstart-results.png",
            title="MNIST-1D, 1-D CNN, 10 chunks",
            lambd=default["protocol"]["dash_lambd"],
        ),
        plot_factor_distributions(
            {
                "1-D CNN (the default)": default["records"],
                "MLP 256x256 (--model mlp)": load("experiments-mnist1d-mlp")["records"],
            },
            folder / "warmstart-factors.png",
            lambd=default["protocol"]["dash_lambd"],
        ),
    ]
    return paths


def main() -> int:
    """``python -m torch_dash_optim.experiments.publish``: redraw the published figures."""
    for path in draw_figures():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
