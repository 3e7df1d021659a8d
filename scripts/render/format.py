"""What every renderer of the published numbers shares: the results folders and the formatting.

A renderer is called as ``renderer(fmt, *folders)`` (see ``scripts/published.py``): ``fmt`` is
``"md"`` (Markdown) or ``"rst"`` (reStructuredText), and each folder is a name under
:data:`RESULTS`: one that a ``dash-warmstart`` command writes (:data:`FOLDERS`), or one of
:data:`OTHER_FOLDERS`. :func:`load` reads a folder, :func:`folder_file` finds one of its files,
and a missing file raises :class:`FileNotFoundError` naming the command that writes it. The
helpers below format what the renderers print (tables, code, bullets, signed numbers,
intervals, durations) the same way in every block.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from torch_dash_optim.experiments.provenance import read_provenance

__all__ = [
    "BUDGETS",
    "FOLDERS",
    "OTHER_FOLDERS",
    "RESULTS",
    "ROOT",
    "bullets",
    "check_fmt",
    "code",
    "duration",
    "folder_path",
    "folder_file",
    "join_words",
    "by_verdict",
    "load",
    "seed_list",
    "sgd_records",
    "signed_number",
    "tabulate",
    "with_interval",
]

#: The repository's root (this file is ``scripts/render/format.py``).
ROOT = Path(__file__).resolve().parents[2]
#: The repository's results folder, which every renderer reads.
RESULTS = ROOT / "results"

#: Each published folder and the one command that regenerates it (run from the repository root).
FOLDERS: dict[str, str] = {
    "experiments-features-patchcnn": "dash-warmstart --out results/experiments-features-patchcnn",
    "experiments-features-patchcnn-untuned": (
        "dash-warmstart --seeds 100,101,102,103,104 --out results/experiments-features-patchcnn-untuned"
    ),
    "experiments-features-patchcnn-torch213": "dash-warmstart --out results/experiments-features-patchcnn-torch213",
    "experiments-mnist-cnn2d": (
        "dash-warmstart --dataset mnist --data-dir data --methods all --seeds 0,1,2,3,4 "
        "--out results/experiments-mnist-cnn2d"
    ),
    "experiments-mnist1d-cnn1d": (
        "dash-warmstart --dataset mnist1d --seeds 0,1,2,3,4 --out results/experiments-mnist1d-cnn1d"
    ),
    "experiments-quick": "dash-warmstart --quick --out results/experiments-quick",
}
#: The other published folders (not ``dash-warmstart`` runs) and the command that regenerates each.
OTHER_FOLDERS: dict[str, str] = {
    "exploration-features": (
        "python scripts/explore_features.py --tag TAG --seeds SEEDS [settings] "
        "--out results/exploration-features/runs.jsonl  (one line per run; the tags and settings are in the file)"
    ),
    "mechanism-noise-sweep": (
        "python -m torch_dash_optim.experiments.mechanism --noise 0.5,0.6,0.7,1.0,1.5 --seeds 0-7 --jobs 2 "
        "--out results/mechanism-noise-sweep"
    ),
    "tuning-features": "python -m torch_dash_optim.experiments.tuning --out results/tuning-features",
}
#: The time each published command may take on the 2-core machine that runs them (a target, not a
#: measurement: the measured times come from each folder's ``provenance.json``).
BUDGETS: dict[str, float] = {
    "experiments-features-patchcnn": 15 * 60,
    "experiments-quick": 2 * 60,
    "tuning-features": 60 * 60,
    "experiments-mnist-cnn2d": 30 * 60,
}


def folder_path(name: str) -> Path:
    """The path of the results folder ``name`` (under :data:`RESULTS`, read when called).

    Examples
    --------
    >>> folder_path("experiments-quick").relative_to(ROOT).as_posix()
    'results/experiments-quick'
    """
    return RESULTS / name


def load(name: str) -> dict[str, Any]:
    """A results folder's ``experiments.json`` plus its ``provenance`` entries (oldest first).

    Examples
    --------
    >>> load("experiments-mnist1d-cnn1d")["setup"]["model"]
    'cnn1d'
    """
    path = folder_path(name) / "experiments.json"
    if not path.exists():
        command = FOLDERS.get(name, f"dash-warmstart --out {folder_path(name)}")
        raise FileNotFoundError(f"{path} is missing; regenerate it with: {command}")
    data = json.loads(path.read_text(encoding="utf-8"))
    data["provenance"] = read_provenance(folder_path(name))
    return data


def folder_file(name: str, file: str) -> Path:
    """The path of ``file`` in the results folder ``name``; a missing file names the command that writes it.

    Examples
    --------
    >>> folder_file("mechanism-noise-sweep", "mechanism.csv").name
    'mechanism.csv'
    """
    path = folder_path(name) / file
    if not path.exists():
        command = OTHER_FOLDERS.get(name, FOLDERS.get(name, "?"))
        raise FileNotFoundError(f"{path} is missing; regenerate it with: {command}")
    return path


def sgd_records(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The records of a loaded folder that trained with SGD (the published tables are SGD's)."""
    return [r for r in data["records"] if r["optimizer"] == "sgd"]


def seed_list(seeds: Iterable[int]) -> str:
    """Seeds in words: ``0–19`` for more than two consecutive ones, else ``3, 5, 9``.

    Examples
    --------
    >>> seed_list(range(20)), seed_list([100, 101, 102]), seed_list([3, 5, 9]), seed_list([0, 1])
    ('0–19', '100–102', '3, 5, 9', '0, 1')
    """
    seeds = sorted(seeds)
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(map(str, seeds))


def by_verdict(comparisons: Iterable[Any], item: Callable[[Any], Any] = lambda c: c) -> dict[str, list[Any]]:
    """``item(c)`` of each comparison, by DASH's accuracy verdict: ``"higher"``, ``"lower"`` or ``"same"``.

    Examples
    --------
    >>> from types import SimpleNamespace as C
    >>> cs = [C(other="cold", accuracy_verdict=lambda: "DASH higher"), C(other="sp", accuracy_verdict=lambda: "x")]
    >>> by_verdict(cs, lambda c: c.other)
    {'higher': ['cold'], 'lower': [], 'same': ['sp']}
    """
    groups: dict[str, list[Any]] = {"higher": [], "lower": [], "same": []}
    for c in comparisons:
        verdict = c.accuracy_verdict()
        groups["higher" if verdict.endswith("higher") else "lower" if verdict.endswith("lower") else "same"].append(
            item(c)
        )
    return groups


def join_words(items: Sequence[str], word: str = "and") -> str:
    """``a``, ``a and b``, ``a, b and c``: a list in a sentence.

    Examples
    --------
    >>> join_words(["a"]), join_words(["a", "b", "c"]), join_words(["a", "b"], "or")
    ('a', 'a, b and c', 'a or b')
    """
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" {word} " + items[-1]


def check_fmt(fmt: str) -> None:
    """Raise :class:`ValueError` unless ``fmt`` is ``"md"`` or ``"rst"``.

    Examples
    --------
    >>> check_fmt("html")
    Traceback (most recent call last):
    ValueError: fmt='html' must be 'md' or 'rst'
    """
    if fmt not in ("md", "rst"):
        raise ValueError(f"fmt={fmt!r} must be 'md' or 'rst'")


def code(text: str, fmt: str) -> str:
    """``text`` as inline code: ```text``` in Markdown, ````text```` in reST.

    Examples
    --------
    >>> code("dash-warmstart", "md"), code("dash-warmstart", "rst")
    ('`dash-warmstart`', '``dash-warmstart``')
    """
    return f"``{text}``" if fmt == "rst" else f"`{text}`"


def bullets(lines: Iterable[str], fmt: str) -> str:
    """One list item per line: ``- `` in Markdown, ``* `` in reST.

    Examples
    --------
    >>> print(bullets(["a", "b"], "rst"))
    * a
    * b
    """
    return "\n".join(f"{'*' if fmt == 'rst' else '-'} {line}" for line in lines)


def tabulate(
    header: Sequence[str], rows: Sequence[Sequence[str]], fmt: str, caption: str = "", widths: Sequence[int] = ()
) -> str:
    """A table: a pipe table in Markdown, a ``list-table`` in reST (with ``caption`` and ``widths``).

    An empty reST cell is written as a bare ``-``, so that it does not open a nested list.

    Examples
    --------
    >>> print(tabulate(["a", "b"], [["1", ""]], "md"))
    | a | b |
    |---|---|
    | 1 |  |
    >>> print(tabulate(["a", "b"], [["1", ""]], "rst", "T", (3, 1)))
    .. list-table:: T
       :header-rows: 1
       :widths: 3 1
    <BLANKLINE>
       * - a
         - b
       * - 1
         -
    """
    check_fmt(fmt)
    if fmt == "md":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    lines = [f".. list-table:: {caption}".rstrip(), "   :header-rows: 1"]
    if widths:
        lines.append("   :widths: " + " ".join(map(str, widths)))
    lines.append("")
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}".rstrip())
        lines += [f"     - {cell}".rstrip() for cell in row[1:]]
    return "\n".join(lines)


def signed_number(value: float, digits: int = 2) -> str:
    """A signed number with a true minus sign.

    Examples
    --------
    >>> signed_number(8.414), signed_number(-0.8, 3)
    ('+8.41', '−0.800')
    """
    return f"{value:+.{digits}f}".replace("-", "−")


def with_interval(iv: Any, unit: str, signed: bool = True) -> str:
    """An interval's mean and bounds (two decimals, true minus signs): ``+2.00 points [+0.50, +3.50]``.

    ``iv`` is a :class:`~torch_dash_optim.experiments.stats.Interval`; with one seed (no bounds)
    only the mean is written.

    Examples
    --------
    >>> from torch_dash_optim.experiments.stats import Interval
    >>> with_interval(Interval(2.0, 0.5, 3.5, 3), " points"), with_interval(Interval(0.5, None, None, 1), "×", False)
    ('+2.00 points [+0.50, +3.50]', '0.50×')
    """

    def num(v: float) -> str:
        return signed_number(v) if signed else f"{v:.2f}".replace("-", "−")

    if iv.low is None:
        return f"{num(iv.mean)}{unit}"
    return f"{num(iv.mean)}{unit} [{num(iv.low)}, {num(iv.high)}]"


def duration(seconds: float) -> str:
    """Seconds under two minutes, else minutes and seconds.

    Examples
    --------
    >>> duration(46.4), duration(1692)
    ('46 s', '28 min 12 s')
    """
    whole = round(seconds)
    return f"{whole} s" if whole < 120 else f"{whole // 60} min {whole % 60} s"
