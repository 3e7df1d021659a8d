"""The published ``dash-warmstart`` results: tables, verdicts, costs, provenance and builds.

Each renderer here is named by a generated block's marker in README.md or
``docs/experiments.rst`` (see ``scripts/published.py``), e.g. ``<!-- generated:
scripts.render.experiments:table md experiments-mnist1d-cnn1d -->``, and is called as
``renderer(fmt, *folders)`` (:mod:`scripts.render.format`): ``fmt`` is ``"md"`` or ``"rst"``,
then the results folders it reads. The comparisons (paired differences, intervals, verdicts)
come from :mod:`torch_dash_optim.experiments.stats`; the costs and the provenance notes from
each folder's ``provenance.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch_dash_optim.experiments.methods import KIND_LABELS
from torch_dash_optim.experiments.stats import LABELS, LEVEL, compare, verdict_lines
from torch_dash_optim.experiments.summary import factor_summary, method_order, summarize

from .format import (
    FOLDERS,
    bullets,
    check_fmt,
    code,
    duration,
    folder_path,
    load,
    sgd_records,
    tabulate,
    with_interval,
)

__all__ = [
    "builds",
    "commands",
    "cost",
    "describe",
    "factor_table",
    "provenance_note",
    "results_sentence",
    "same_records",
    "seed_table",
    "table",
    "verdicts",
    "verdicts_differ",
]

_DATASETS = {"mnist1d": "MNIST-1D", "features": "Features (the paper's data model)"}
_MODELS = {"patchcnn": "Patch CNN", "cnn1d": "1-D CNN", "mlp": "MLP", "resnet18": "ResNet-18"}


def describe(data: dict[str, Any]) -> str:
    """A loaded folder's data set, model, chunks and optimizer, for a caption or a figure title.

    Examples
    --------
    >>> describe(load("experiments-mnist1d-cnn1d"))
    'MNIST-1D, 1-D CNN, 10 chunks, SGD'
    """
    setup, protocol = data["setup"], data["protocol"]
    dataset, model = setup.get("dataset", "?"), setup.get("model", "?")
    return f"{_DATASETS.get(dataset, dataset)}, {_MODELS.get(model, model)}, {protocol['num_chunks']} chunks, SGD"


def _pm(stats: tuple[float, float], acc: bool) -> str:
    """``mean ± std``: an accuracy in percent with two decimals, else a count."""
    mean, std = stats
    return f"{100 * mean:.2f} ± {100 * std:.2f}" if acc else f"{mean:.0f} ± {std:.0f}"


def _capped(data: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """Per method, experiments that ended at the epoch cap below the threshold, and all of them."""
    cap, threshold = data["protocol"]["max_epochs"], data["protocol"]["threshold"]
    out: dict[str, tuple[int, int]] = {}
    for r in sgd_records(data):
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
    stats = summarize(sgd_records(data))
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
    return tabulate(header, rows, fmt, f"{describe(data)}: {code('results/' + folder, fmt)}") + "\n\n" + note


def _comparisons(data: dict[str, Any]) -> list[Any]:
    """DASH against every other method of a loaded folder (SGD), as :func:`compare` pairs them."""
    protocol = data["protocol"]
    return compare(sgd_records(data), "dash", protocol["max_epochs"], protocol["threshold"])


def verdicts(fmt: str, folder: str) -> str:
    """DASH against each other method of a folder: one verdict line each for accuracy and steps.

    Examples
    --------
    >>> verdicts("md", "experiments-mnist1d-cnn1d").splitlines()[0].startswith("- DASH − Cold")
    True
    """
    check_fmt(fmt)
    data = load(folder)
    lines = verdict_lines(_comparisons(data), data["protocol"]["max_epochs"])
    return bullets(lines, fmt)


def results_sentence(fmt: str, folder: str) -> str:
    """What a folder's paired intervals support about DASH, in one or two sentences, and no more.

    A method whose interval of DASH's lead contains 0 is *not distinguishable* from DASH; with
    one seed there is no interval, and the sentence says so instead of ranking.

    Examples
    --------
    >>> results_sentence("md", "experiments-mnist1d-cnn1d").startswith("At the last experiment")
    True
    """
    check_fmt(fmt)
    data = load(folder)
    comparisons = _comparisons(data)
    if not comparisons:
        return f"DASH did not run beside another method in {code('results/' + folder, fmt)}."
    n = len(comparisons[0].seeds)
    if n < 2:
        diffs = ", ".join(f"{LABELS.get(c.other, c.other)} {with_interval(c.accuracy, ' points')}"
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
        groups[key].append(f"{LABELS.get(c.other, c.other)} ({with_interval(c.accuracy, ' points')}{cap})")

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
            f" DASH took {with_interval(cold.steps, '×', signed=False)} the training steps of a cold start "
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
    records = [r for f in folders for r in sgd_records(load(f))]
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
        + "; ".join(f"{LABELS.get(c.other, c.other)} {with_interval(c.accuracy, '')} ({len(c.seeds)} seeds, "
                    f"{c.accuracy_verdict()})" for c in comparisons)
        + "."
    )
    return tabulate(header, rows, fmt, "DASH against the others, seed by seed") + "\n\n" + note


def _build(data: dict[str, Any]) -> str:
    """The torch build and CPU of a folder's last invocation."""
    last = data["provenance"][-1] if data["provenance"] else {}
    return f"torch {last.get('torch', '?')} on {last.get('cpu', '?')}"


def _code_revision(entry: dict[str, Any]) -> str:
    """Which code ran an invocation: ``code at <commit>`` in a clone, or the installed package with no revision."""
    if entry.get("installed"):
        return f"installed package {entry['installed']}, no revision"
    dirty = " with uncommitted changes" if entry.get("dirty") else ""
    return f"code at {(entry.get('commit') or 'unknown')[:10]}{dirty}"


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
        f"{duration(cpu)} of CPU time in the experiments, {duration(wall)} of wall time with {workers} on "
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
    check_fmt(fmt)
    lines = []
    for name in _published(folders):
        data = load(name)
        command = FOLDERS.get(name) or (data["provenance"][-1].get("command", "?") if data["provenance"] else "?")
        lines.append(f"{code(command, fmt)}: {_cost(data)}.")
    return bullets(lines, fmt)


def builds(fmt: str, first: str, second: str) -> str:
    """The same command's results on two builds or machines: last-experiment numbers, and verdicts that differ.

    Examples
    --------
    >>> builds("md", "experiments-mnist1d-cnn1d", "experiments-mnist1d-cnn1d").endswith("Verdicts that differ: none.")
    True
    """
    a, b = load(first), load(second)
    stats_a, stats_b = summarize(sgd_records(a)), summarize(sgd_records(b))
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
        f"Means over seeds at the last experiment. A: {code('results/' + first, fmt)}, {_build(a)}; "
        f"B: {code('results/' + second, fmt)}, {_build(b)}. Verdicts that differ: "
        + ("; ".join(differ) if differ else "none")
        + "."
    )
    return tabulate(header, rows, fmt, "One command, two builds") + "\n\n" + note


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
        stats = factor_summary(r for r in sgd_records(data) if r["method"] == "dash")
        for kind, kind_label in KIND_LABELS.items():
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
    return tabulate(header, rows, fmt, "DASH's factors per layer kind") + "\n\n" + note


def _published(folders: Sequence[str]) -> list[str]:
    """The given folders (default: every one of ``FOLDERS``) that hold an ``experiments.json``."""
    return [f for f in (folders or FOLDERS) if (folder_path(f) / "experiments.json").exists()]


def provenance_note(fmt: str, *folders: str) -> str:
    """Which build, machine and commit produced each folder (default: every published one that exists).

    Examples
    --------
    >>> "torch " in provenance_note("md")
    True
    """
    check_fmt(fmt)
    lines = []
    for name in _published(folders):
        data = load(name)
        last = data["provenance"][-1] if data["provenance"] else {}
        command = FOLDERS.get(name, last.get("command", "?"))
        lines.append(
            f"{code('results/' + name, fmt)}: {code(command, fmt)}; torch {last.get('torch', '?')}, Python "
            f"{last.get('python', '?')}, {_code_revision(last)}; {_cost(data)}."
        )
    return bullets(lines, fmt)


def commands(fmt: str, *folders: str) -> str:
    """A console block with the command of each folder (default: every published one that exists).

    Examples
    --------
    >>> print(commands("md").splitlines()[1])
    $ dash-warmstart --out results/experiments-mnist1d-cnn1d
    """
    check_fmt(fmt)
    body = "\n".join(f"$ {FOLDERS[n]}" for n in _published(folders) if n in FOLDERS)
    if fmt == "rst":
        return ".. code-block:: console\n\n" + "\n".join(f"   {line}" for line in body.splitlines())
    return "```console\n" + body + "\n```"


def _record_key(r: dict[str, Any]) -> tuple[str, str, int, int]:
    """What identifies a record: method, optimizer, seed, experiment."""
    return (r["method"], r["optimizer"], int(r["seed"]), int(r["experiment"]))


def same_records(fmt: str, first: str, second: str) -> str:
    """How many records two folders share, and how many of them have the same test accuracy and steps.

    Examples
    --------
    >>> same_records("md", "experiments-mnist1d-cnn1d", "experiments-mnist1d-cnn1d")[:12]
    'Of the 150 r'
    """
    check_fmt(fmt)
    a = {_record_key(r): r for r in load(first)["records"]}
    b = {_record_key(r): r for r in load(second)["records"]}
    shared = sorted(set(a) & set(b))
    same = [k for k in shared if (a[k]["test_acc"], a[k]["steps"]) == (b[k]["test_acc"], b[k]["steps"])]
    return (f"Of the {len(shared)} records (method, optimizer, seed, experiment) that "
            f"{code('results/' + first, fmt)} and {code('results/' + second, fmt)} share, {len(same)} have the "
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
    check_fmt(fmt)
    a, b = load(first), load(second)
    where = f"{code('results/' + first, fmt)} (A) and {code('results/' + second, fmt)} (B)"
    differ = _verdicts_differ(a, b)
    if not differ:
        return f"The verdicts of {where} agree on every method."
    parts = []
    for c, d, what in differ:
        if what == "accuracy":
            va, vb = (f"{x.accuracy_verdict()} ({with_interval(x.accuracy, ' points')})" for x in (c, d))
        else:
            va, vb = (f"{x.steps_verdict()} ({with_interval(x.steps, '×', signed=False)})" for x in (c, d))
        parts.append(f"DASH against {LABELS.get(c.other, c.other)}, {what}: A {va}, B {vb}")
    return f"The verdicts of {where} differ on: " + "; ".join(parts) + "; they agree on every other method."
