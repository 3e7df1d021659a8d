"""The published experiment numbers: tables and sentences rendered from committed results folders.

README.md and ``docs/experiments.rst`` quote results only inside generated blocks (see
``scripts/published.py``), whose marker names a renderer, the format and the results folders it
reads, e.g. ``<!-- generated: torch_dash_optim.experiments.publish:table md
experiments-mnist1d-cnn1d -->``. This module holds the renderers of the ``dash-warmstart``
results (tables, verdicts, costs, builds), the folder lists and the helpers every renderer
shares; :mod:`~torch_dash_optim.experiments.publish_exploration` renders the exploration runs and
the warm-start gap, :mod:`~torch_dash_optim.experiments.publish_mechanism` the mechanism
measurement. Every renderer is called as ``renderer(fmt, *folders)``:

* ``fmt`` is ``"md"`` (Markdown) or ``"rst"`` (reStructuredText); any other value raises
  :class:`ValueError`;
* each folder is a name under :data:`RESULTS` that one ``dash-warmstart`` command writes
  (:data:`FOLDERS` lists the published ones), or one of :data:`OTHER_FOLDERS`: the exploration
  runs that chose the default (``runs.jsonl``) and the mechanism measurement
  (``mechanism.csv``); a folder without its file raises :class:`FileNotFoundError` naming the
  command that writes it.

Costs (:func:`cost`, :func:`provenance_note`) come from each folder's ``provenance.json``.

The comparisons (paired differences, intervals, verdicts) come from :mod:`.stats`.
``python scripts/published.py --write`` re-renders the blocks, and a test fails when a block
differs from what its folders render. ``python -m torch_dash_optim.experiments.publish``
redraws the figures in ``docs/_static/``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .provenance import read_provenance
from .stats import LEVEL, compare, verdict_lines
from .summary import LABELS, factor_summary, method_order, summarize

__all__ = [
    "FOLDERS",
    "OTHER_FOLDERS",
    "RESULTS",
    "commands",
    "draw_figures",
    "builds",
    "cost",
    "factor_table",
    "load",
    "provenance_note",
    "results_sentence",
    "same_records",
    "seed_table",
    "table",
    "verdicts",
    "verdicts_differ",
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
    "experiments-features-patchcnn": "dash-warmstart --out results/experiments-features-patchcnn",
    "experiments-features-patchcnn-untuned": (
        "dash-warmstart --seeds 100,101,102,103,104 --out results/experiments-features-patchcnn-untuned"
    ),
    "experiments-features-patchcnn-torch213": "dash-warmstart --out results/experiments-features-patchcnn-torch213",
    "experiments-quick": "dash-warmstart --quick --out results/experiments-quick",
}
#: The other published folders (not ``dash-warmstart`` runs) and the command that regenerates each.
OTHER_FOLDERS: dict[str, str] = {
    "exploration-features": (
        "python scripts/explore_features.py --tag TAG --seeds SEEDS [settings] "
        "--out results/exploration-features/runs.jsonl  (one line per run; the tags and settings are in the file)"
    ),
    "mechanism-features-patchcnn": (
        "python -m torch_dash_optim.experiments.mechanism --out results/mechanism-features-patchcnn"
    ),
}
#: The folders of the published figures: the default run, and the runs whose factors are compared.
FIGURES: dict[str, Any] = {
    "results": "experiments-features-patchcnn",
    "factors": {
        "Patch CNN (features, the default)": "experiments-features-patchcnn",
        "1-D CNN (MNIST-1D)": "experiments-mnist1d-cnn1d",
        "MLP 256x256 (MNIST-1D)": "experiments-mnist1d-mlp",
    },
}
_KINDS = {"conv": "Conv kernels", "linear": "Linear weights", "bias": "Biases"}
_DATASETS = {"mnist1d": "MNIST-1D", "features": "Features (the paper's data model)"}
_MODELS = {"patchcnn": "Patch CNN", "cnn1d": "1-D CNN", "mlp": "MLP", "resnet18": "ResNet-18"}


def load(name: str, root: Path | None = None) -> dict[str, Any]:
    """Return a results folder's ``experiments.json`` plus its ``provenance`` entries.

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


def _check(fmt: str) -> None:
    if fmt not in ("md", "rst"):
        raise ValueError(f"fmt={fmt!r} must be 'md' or 'rst'")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], fmt: str, caption: str = "") -> str:
    _check(fmt)
    if fmt == "md":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    lines = [f".. list-table:: {caption}".rstrip(), "   :header-rows: 1", ""]
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {cell}" for cell in row[1:]]
    return "\n".join(lines)


def _code(text: str, fmt: str) -> str:
    return f"``{text}``" if fmt == "rst" else f"`{text}`"


def _sgd(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in data["records"] if r["optimizer"] == "sgd"]


def _describe(data: dict[str, Any]) -> str:
    setup, protocol = data["setup"], data["protocol"]
    dataset, model = setup.get("dataset", "?"), setup.get("model", "?")
    return f"{_DATASETS.get(dataset, dataset)}, {_MODELS.get(model, model)}, {protocol['num_chunks']} chunks, SGD"


def _pm(stats: tuple[float, float], acc: bool) -> str:
    mean, std = stats
    return f"{100 * mean:.2f} ± {100 * std:.2f}" if acc else f"{mean:.0f} ± {std:.0f}"


def _capped(data: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """Per method, experiments that ended at the epoch cap below the threshold, and all of them."""
    cap, threshold = data["protocol"]["max_epochs"], data["protocol"]["threshold"]
    out: dict[str, tuple[int, int]] = {}
    for r in _sgd(data):
        n, total = out.get(r["method"], (0, 0))
        out[r["method"]] = (n + (r["epochs"] >= cap and r["train_acc"] < threshold), total + 1)
    return {m: v for m, v in out.items() if v[0]}


def table(fmt: str, folder: str) -> str:
    """The mean ± std table of a results folder (SGD), with a note on its seeds and capped runs.

    Examples
    --------
    >>> print(table("md", "experiments-mnist1d-cnn1d").splitlines()[0])
    | Method | Test acc, last (%) | Steps, last | Test acc, mean (%) | Steps, mean |
    """
    data = load(folder)
    stats = summarize(_sgd(data))
    header = ["Method", "Test acc, last (%)", "Steps, last", "Test acc, mean (%)", "Steps, mean"]
    rows = []
    for m in method_order(m for m, _o in stats):
        row = stats[(m, "sgd")]
        label = f"**{LABELS.get(m, m)}**" if m == "dash" else LABELS.get(m, m)
        metrics = ("last_acc", "last_steps", "avg_acc", "avg_steps")
        rows.append([label, *(_pm(row[k], k.endswith("acc")) for k in metrics)])
    seeds = ", ".join(map(str, sorted({int(r["seed"]) for r in data["records"]})))
    protocol = data["protocol"]
    note = (
        f"Mean ± std over seeds {seeds} (std with ddof=0). *last*: at the last experiment (all "
        f"{protocol['num_chunks']} chunks); *mean*: averaged over the experiments."
    )
    capped = _capped(data)
    if capped:
        note += (
            f" Stopped by the {protocol['max_epochs']}-epoch cap before reaching "
            f"{100 * protocol['threshold']:.1f}% train accuracy: "
            + ", ".join(f"{LABELS.get(m, m)} in {n} of {total} experiments" for m, (n, total) in capped.items())
            + "; their step counts are the cap's."
        )
    else:
        note += f" No experiment reached the {protocol['max_epochs']}-epoch cap."
    if fmt == "rst":
        note = note.replace("*last*", "**last**").replace("*mean*", "**mean**")
    return _table(header, rows, fmt, f"{_describe(data)}: {_code('results/' + folder, fmt)}") + "\n\n" + note


def _comparisons(data: dict[str, Any]) -> list[Any]:
    protocol = data["protocol"]
    return compare(_sgd(data), "dash", protocol["max_epochs"], protocol["threshold"])


def verdicts(fmt: str, folder: str) -> str:
    """DASH against each other method of a folder: one verdict line each for accuracy and steps.

    Examples
    --------
    >>> verdicts("md", "experiments-mnist1d-cnn1d").splitlines()[0].startswith("- DASH − Cold")
    True
    """
    _check(fmt)
    data = load(folder)
    lines = verdict_lines(_comparisons(data), data["protocol"]["max_epochs"])
    return "\n".join(f"{'*' if fmt == 'rst' else '-'} {line}" for line in lines)


def _with_interval(iv: Any, unit: str, signed: bool = True) -> str:
    def num(v: float) -> str:
        return (f"{v:+.2f}" if signed else f"{v:.2f}").replace("-", "−")

    if iv.low is None:
        return f"{num(iv.mean)}{unit}"
    return f"{num(iv.mean)}{unit} [{num(iv.low)}, {num(iv.high)}]"


def results_sentence(fmt: str, folder: str) -> str:
    """What a folder's paired intervals support about DASH, in one or two sentences, and no more.

    A method whose interval of DASH's lead contains 0 is *not distinguishable* from DASH; with
    one seed there is no interval, and the sentence says so instead of ranking.

    Examples
    --------
    >>> results_sentence("md", "experiments-mnist1d-cnn1d").startswith("At the last experiment")
    True
    """
    _check(fmt)
    data = load(folder)
    comparisons = _comparisons(data)
    if not comparisons:
        return f"DASH did not run beside another method in {_code('results/' + folder, fmt)}."
    n = len(comparisons[0].seeds)
    if n < 2:
        diffs = ", ".join(f"{LABELS.get(c.other, c.other)} {_with_interval(c.accuracy, ' points')}"
                          for c in comparisons)
        return (
            f"At the last experiment, with one seed, DASH's test accuracy minus each other method's is: {diffs}; "
            "one seed gives no interval, so these numbers rank nothing."
        )
    groups: dict[str, list[str]] = {"higher": [], "lower": [], "same": []}
    for c in comparisons:
        verdict = c.accuracy_verdict()
        key = "higher" if verdict.endswith("higher") else "lower" if verdict.endswith("lower") else "same"
        cap = f"; {LABELS.get(c.other, c.other)} stopped at the epoch cap" if c.other in c.capped else ""
        groups[key].append(f"{LABELS.get(c.other, c.other)} ({_with_interval(c.accuracy, ' points')}{cap})")

    def join(items: list[str]) -> str:
        return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]

    bold = "**"
    parts = []
    if groups["higher"]:
        parts.append(f"{bold}higher than{bold} that of {join(groups['higher'])}")
    if groups["lower"]:
        parts.append(f"{bold}lower than{bold} that of {join(groups['lower'])}")
    if groups["same"]:
        parts.append(f"not distinguishable from that of {join(groups['same'])}")
    text = (
        f"At the last experiment ({n} seeds; DASH minus each method, paired by seed, mean with its "
        f"{100 * LEVEL:.0f}% t interval), DASH's test accuracy is " + "; ".join(parts) + "."
    )
    cold = next((c for c in comparisons if c.other == "cold"), None)
    if cold is not None:
        verdict = cold.steps_verdict()
        how = {"DASH fewer": "fewer", "DASH more": "more"}.get(verdict, "not distinguishably fewer or more")
        text += (
            f" DASH took {_with_interval(cold.steps, '×', signed=False)} the training steps of a cold start "
            f"({how})."
        )
        if cold.capped:
            text += " Some of these runs stopped at the epoch cap, so their steps are the cap's."
    return text


def seed_table(fmt: str, *folders: str) -> str:
    """Per seed, DASH's last-experiment accuracy minus the others', over the given folders.

    Examples
    --------
    >>> table_md = seed_table("md", "experiments-mnist1d-cnn1d")
    >>> table_md.splitlines()[0]
    '| Seed | DASH (%) | DASH − Cold (random init) | DASH − Warm | DASH − Shrink & Perturb | DASH − FIRE |'
    """
    records = [r for f in folders for r in _sgd(load(f))]
    protocol = load(folders[0])["protocol"]
    comparisons = compare(records, "dash", protocol["max_epochs"], protocol["threshold"])
    seeds = sorted({s for c in comparisons for s in c.seeds})
    dash = {int(r["seed"]): r for r in records if r["method"] == "dash" and r["experiment"] == protocol["num_chunks"]}
    header = ["Seed", "DASH (%)"] + [f"DASH − {LABELS.get(c.other, c.other)}" for c in comparisons]
    rows = []
    for s in seeds:
        row = [str(s), f"{100 * dash[s]['test_acc']:.2f}"]
        for c in comparisons:
            row.append(f"{c.points[c.seeds.index(s)]:+.2f}" if s in c.seeds else "n/a")
        rows.append(row)
    note = (
        f"DASH's test accuracy at the last experiment minus the other method's, in points, per seed. "
        f"Mean with its {100 * LEVEL:.0f}% t interval over the seeds that ran both: "
        + "; ".join(f"{LABELS.get(c.other, c.other)} {_with_interval(c.accuracy, '')} ({len(c.seeds)} seeds, "
                    f"{c.accuracy_verdict()})" for c in comparisons)
        + "."
    )
    return _table(header, rows, fmt, "DASH against the others, seed by seed") + "\n\n" + note


def _build(data: dict[str, Any]) -> str:
    last = data["provenance"][-1] if data["provenance"] else {}
    return f"torch {last.get('torch', '?')} on {last.get('cpu', '?')}"


def _duration(seconds: float) -> str:
    """``"46 s"`` under two minutes, else minutes and seconds: ``"28 min 12 s"``."""
    whole = round(seconds)
    return f"{whole} s" if whole < 120 else f"{whole // 60} min {whole % 60} s"


def _cost(data: dict[str, Any]) -> str:
    """CPU time of a folder's experiments and wall time of its invocations (``provenance.json``)."""
    entries = data["provenance"]
    if not entries:
        return "no provenance.json, so no recorded time"
    cpu = float(entries[-1].get("cpu_seconds") or 0.0)  # each entry counts every experiment of the folder
    wall = sum(float(e.get("wall_seconds") or 0.0) for e in entries)
    jobs = sorted({int(e.get("jobs") or 1) for e in entries})
    workers = " or ".join(map(str, jobs)) + (" worker" if jobs == [1] else " workers")
    last = entries[-1]
    text = (
        f"{_duration(cpu)} of CPU time in the experiments, {_duration(wall)} of wall time with {workers} on "
        f"{last.get('cpu', '?')} ({last.get('cpu_count', '?')} cores)"
    )
    if len(entries) > 1:
        text += f", over {len(entries)} invocations"
    return text


def cost(fmt: str, *folders: str) -> str:
    """What each folder's command cost, from its ``provenance.json``: CPU time, wall time, workers.

    The CPU time is that of the experiments, summed over the worker processes (the last
    invocation's, which counts resumed experiments too); the wall time is the sum over the
    invocations and depends on what else the machine ran.

    Examples
    --------
    >>> cost("md", "experiments-mnist1d-cnn1d").startswith("- `dash-warmstart --out")
    True
    """
    _check(fmt)
    lines = []
    for name in _published(folders):
        data = load(name)
        command = FOLDERS.get(name) or (data["provenance"][-1].get("command", "?") if data["provenance"] else "?")
        lines.append(f"{_code(command, fmt)}: {_cost(data)}.")
    return "\n".join(f"{'*' if fmt == 'rst' else '-'} {line}" for line in lines)


def builds(fmt: str, first: str, second: str) -> str:
    """The same command's results on two builds or machines: last-experiment numbers, and verdicts that differ.

    Examples
    --------
    >>> builds("md", "experiments-mnist1d-cnn1d", "experiments-mnist1d-cnn1d").endswith("Verdicts that differ: none.")
    True
    """
    a, b = load(first), load(second)
    stats_a, stats_b = summarize(_sgd(a)), summarize(_sgd(b))
    header = ["Method", "Test acc A (%)", "Test acc B (%)", "B − A", "Steps A", "Steps B"]
    rows = []
    for m in method_order(k[0] for k in stats_a if k in stats_b):
        acc_a, acc_b = 100 * stats_a[(m, "sgd")]["last_acc"][0], 100 * stats_b[(m, "sgd")]["last_acc"][0]
        steps_a, steps_b = stats_a[(m, "sgd")]["last_steps"][0], stats_b[(m, "sgd")]["last_steps"][0]
        rows.append([LABELS.get(m, m), f"{acc_a:.2f}", f"{acc_b:.2f}", f"{acc_b - acc_a:+.2f}", f"{steps_a:.0f}",
                     f"{steps_b:.0f}"])
    differ = [
        f"DASH against {LABELS.get(c.other, c.other)}, {what}: A {va}, B {vb}"
        for c, d, what in _verdicts_differ(a, b)
        for va, vb in [(c.accuracy_verdict(), d.accuracy_verdict()) if what == "accuracy"
                       else (c.steps_verdict(), d.steps_verdict())]
    ]
    note = (
        f"Means over seeds at the last experiment. A: {_code('results/' + first, fmt)}, {_build(a)}; "
        f"B: {_code('results/' + second, fmt)}, {_build(b)}. Verdicts that differ: "
        + ("; ".join(differ) if differ else "none")
        + "."
    )
    return _table(header, rows, fmt, "One command, two builds") + "\n\n" + note


def factor_table(fmt: str, *folders: str) -> str:
    """DASH's factors per layer kind in each folder: units, share at the floor, quantiles.

    Examples
    --------
    >>> "| 1-D CNN | Conv kernels |" in factor_table("md", "experiments-mnist1d-cnn1d")
    True
    """
    header = ["Model", "Layer kind", "Units", "At floor (%)", "10%", "Median", "90%"]
    rows = []
    for name in folders:
        data = load(name)
        model = data["setup"].get("model")
        label = _MODELS.get(model, model or name)
        stats = factor_summary(r for r in _sgd(data) if r["method"] == "dash")
        for kind, kind_label in _KINDS.items():
            row = stats.get(("sgd", kind))
            if row is not None:
                rows.append([label, kind_label, str(row["units"]), f"{100 * row['at_floor']:.1f}",
                             *(f"{row[q]:.2f}" for q in ("q10", "q50", "q90"))])
    protocol = load(folders[0])["protocol"]
    note = (
        f"DASH's factors at each new chunk, per layer kind: the number of units, the share at the floor "
        f"λ = {protocol['dash_lambd']}, and the 10%, 50% and 90% quantiles of the factors (averaged over "
        f"seeds and experiments 2 to {protocol['num_chunks']}). A unit is a conv kernel slice (one output "
        "channel's weights on one input channel), a Linear row, or a bias."
    )
    return _table(header, rows, fmt, "DASH's factors per layer kind") + "\n\n" + note


def _published(folders: Sequence[str]) -> list[str]:
    return [f for f in (folders or FOLDERS) if (RESULTS / f / "experiments.json").exists()]


def provenance_note(fmt: str, *folders: str) -> str:
    """Which build, machine and commit produced each folder (default: every published one that exists).

    Examples
    --------
    >>> "torch " in provenance_note("md")
    True
    """
    _check(fmt)
    lines = []
    for name in _published(folders):
        data = load(name)
        last = data["provenance"][-1] if data["provenance"] else {}
        commit = (last.get("commit") or "unknown")[:10] + (" with uncommitted changes" if last.get("dirty") else "")
        command = FOLDERS.get(name, last.get("command", "?"))
        lines.append(
            f"{_code('results/' + name, fmt)}: {_code(command, fmt)}; torch {last.get('torch', '?')}, Python "
            f"{last.get('python', '?')}, code at {commit}; {_cost(data)}."
        )
    return "\n".join(f"{'*' if fmt == 'rst' else '-'} {line}" for line in lines)


def commands(fmt: str, *folders: str) -> str:
    """A console block with the command of each folder (default: every published one that exists).

    Examples
    --------
    >>> print(commands("md").splitlines()[1])
    $ dash-warmstart --out results/experiments-mnist1d-cnn1d
    """
    _check(fmt)
    body = "\n".join(f"$ {FOLDERS[n]}" for n in _published(folders) if n in FOLDERS)
    if fmt == "rst":
        return ".. code-block:: console\n\n" + "\n".join(f"   {line}" for line in body.splitlines())
    return "```console\n" + body + "\n```"


def _num(value: float, digits: int = 2) -> str:
    """A signed number with a true minus sign: ``+8.41``, ``−0.80``."""
    return f"{value:+.{digits}f}".replace("-", "−")


def _read_folder_file(folder: str, name: str) -> Path:
    """The path of ``name`` in a results folder; a missing file names the command that writes it."""
    path = RESULTS / folder / name
    if not path.exists():
        command = OTHER_FOLDERS.get(folder, FOLDERS.get(folder, "?"))
        raise FileNotFoundError(f"{path} is missing; regenerate it with: {command}")
    return path


def _record_key(r: dict[str, Any]) -> tuple[str, str, int, int]:
    return (r["method"], r["optimizer"], int(r["seed"]), int(r["experiment"]))


def same_records(fmt: str, first: str, second: str) -> str:
    """How many records two folders share, and how many of them have the same test accuracy and steps.

    Examples
    --------
    >>> same_records("md", "experiments-mnist1d-cnn1d", "experiments-mnist1d-cnn1d")[:12]
    'Of the 150 r'
    """
    _check(fmt)
    a = {_record_key(r): r for r in load(first)["records"]}
    b = {_record_key(r): r for r in load(second)["records"]}
    shared = sorted(set(a) & set(b))
    same = [k for k in shared if (a[k]["test_acc"], a[k]["steps"]) == (b[k]["test_acc"], b[k]["steps"])]
    return (f"Of the {len(shared)} records (method, optimizer, seed, experiment) that "
            f"{_code('results/' + first, fmt)} and {_code('results/' + second, fmt)} share, {len(same)} have the "
            f"same test accuracy and the same number of steps.")


def _verdicts_differ(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[Any, Any, str]]:
    """(comparison in a, comparison in b, "accuracy" or "steps") for every verdict that differs."""
    verdicts_b = {(c.other, c.optimizer): c for c in _comparisons(b)}
    out = []
    for c in _comparisons(a):
        d = verdicts_b.get((c.other, c.optimizer))
        if d is None:
            continue
        if c.accuracy_verdict() != d.accuracy_verdict():
            out.append((c, d, "accuracy"))
        if c.steps_verdict() != d.steps_verdict():
            out.append((c, d, "steps"))
    return out


def verdicts_differ(fmt: str, first: str, second: str) -> str:
    """The verdicts of DASH against each method that differ between two folders, with both intervals.

    Examples
    --------
    >>> verdicts_differ("md", "experiments-mnist1d-cnn1d", "experiments-mnist1d-cnn1d")  # doctest: +ELLIPSIS
    'The verdicts of ... agree on every method.'
    """
    _check(fmt)
    a, b = load(first), load(second)
    where = f"{_code('results/' + first, fmt)} (A) and {_code('results/' + second, fmt)} (B)"
    differ = _verdicts_differ(a, b)
    if not differ:
        return f"The verdicts of {where} agree on every method."
    parts = []
    for c, d, what in differ:
        if what == "accuracy":
            va, vb = (f"{x.accuracy_verdict()} ({_with_interval(x.accuracy, ' points')})" for x in (c, d))
        else:
            va, vb = (f"{x.steps_verdict()} ({_with_interval(x.steps, '×', signed=False)})" for x in (c, d))
        parts.append(f"DASH against {LABELS.get(c.other, c.other)}, {what}: A {va}, B {vb}")
    return f"The verdicts of {where} differ on: " + "; ".join(parts) + "; they agree on every other method."


def draw_figures(folder: Path | None = None) -> list[Path]:
    """Draw ``warmstart-results.png`` and ``warmstart-factors.png`` (see ``FIGURES``) into ``folder``.

    ``folder`` defaults to the repository's ``docs/_static/``; returns the paths written.

    Examples
    --------
    >>> import tempfile
    >>> [p.name for p in draw_figures(Path(tempfile.mkdtemp()))]
    ['warmstart-results.png', 'warmstart-factors.png']
    """
    from .plot import plot_factor_distributions, plot_results

    folder = folder or RESULTS.parent / "docs" / "_static"
    default = load(FIGURES["results"])
    protocol = default["protocol"]
    return [
        plot_results(
            default["records"],
            folder / "warmstart-results.png",
            title=_describe(default),
            lambd=protocol["dash_lambd"],
            max_epochs=protocol["max_epochs"],
            threshold=protocol["threshold"],
        ),
        plot_factor_distributions(
            {title: load(name)["records"] for title, name in FIGURES["factors"].items()},
            folder / "warmstart-factors.png",
            lambd=protocol["dash_lambd"],
        ),
    ]


def main() -> int:
    """``python -m torch_dash_optim.experiments.publish``: redraw the published figures."""
    for path in draw_figures():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
