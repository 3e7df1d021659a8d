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

from torch_dash_optim.experiments.loaders import batch_sizes
from torch_dash_optim.experiments.methods import KIND_LABELS
from torch_dash_optim.experiments.provenance import read_provenance
from torch_dash_optim.experiments.stats import LABELS, LEVEL, compare, firmness, verdict_lines
from torch_dash_optim.experiments.summary import factor_summary, method_order, per_experiment, summarize

from .format import (
    BUDGETS,
    FOLDERS,
    OTHER_FOLDERS,
    bullets,
    by_verdict,
    check_fmt,
    code,
    duration,
    folder_path,
    join_words,
    load,
    seed_list,
    sgd_records,
    signed_number,
    tabulate,
    with_interval,
)

__all__ = [
    "CONTROLS",
    "MAIN_VERDICTS",
    "builds",
    "commands",
    "cost",
    "describe",
    "direction_sentence",
    "factor_table",
    "headline",
    "paper_aim",
    "plasticity",
    "provenance_note",
    "results_sentence",
    "run_times",
    "same_records",
    "seed_table",
    "seed_robustness",
    "setting",
    "steps_table",
    "table",
    "verdicts",
    "verdicts_differ",
]

_DATASETS = {"mnist1d": "MNIST-1D", "features": "Features (the paper's data model)", "mnist": "MNIST (real digits)"}

#: The controls of DASH's direction: the same factors per tensor on random units, and each
#: tensor shrunk alike by DASH's mean factor for it. DASH's direction is credited only if DASH
#: beats both.
CONTROLS: tuple[str, ...] = ("shuffled", "uniform_matched")
#: The verdicts of the default run that must not rest on one seed (see :func:`seed_robustness`).
MAIN_VERDICTS: tuple[str, ...] = ("cold", "warm", "sp", "uniform_matched")
_MODELS = {"patchcnn": "Patch CNN", "cnn1d": "1-D CNN", "cnn2d": "2-D CNN", "mlp": "MLP", "resnet18": "ResNet-18"}


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
    seeds = seed_list({int(r["seed"]) for r in data["records"]})
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

    def item(c: Any) -> str:
        cap = f"; {LABELS.get(c.other, c.other)} stopped at the epoch cap" if c.other in c.capped else ""
        firm = "" if not c.flips() else "; " + firmness(c).split("; ", 1)[1]
        return f"{LABELS.get(c.other, c.other)} ({with_interval(c.accuracy, ' points')}{firm}{cap})"

    groups = by_verdict(comparisons, item)

    bold = "**"
    parts = []
    if groups["higher"]:
        parts.append(f"{bold}higher than{bold} that of {join_words(groups['higher'])}")
    if groups["lower"]:
        parts.append(f"{bold}lower than{bold} that of {join_words(groups['lower'])}")
    if groups["same"]:
        parts.append(f"not distinguishable from that of {join_words(groups['same'])}")
    firm = sum(not c.flips() for c in comparisons)
    held = (
        "every one of these verdicts holds with any one seed left out"
        if firm == len(comparisons)
        else f"{firm} of these {len(comparisons)} verdicts hold with any one seed left out; "
        + ("the other says which seed would change it" if len(comparisons) - firm == 1
           else "the others say which seed would change them")
    )
    text = (
        f"At the last experiment ({n} seeds; DASH minus each method, paired by seed, mean with its "
        f"{100 * LEVEL:.0f}% t interval), DASH's test accuracy is " + "; ".join(parts) + f"; {held}."
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
    >>> seed_table("md", "experiments-mnist1d-cnn1d").splitlines()[0].split(" | ")[:4]
    ['| Seed', 'DASH (%)', 'DASH − Cold (random init)', 'DASH − Warm']
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
            row.append(signed_number(c.points[c.seeds.index(s)]) if s in c.seeds else "n/a")
        rows.append(row)
    note = (
        f"DASH's test accuracy at the last experiment minus the other method's, in points, per seed. "
        f"Mean with its {100 * LEVEL:.0f}% t interval over the seeds that ran both: "
        + "; ".join(f"{LABELS.get(c.other, c.other)} {with_interval(c.accuracy, '')} ({c.accuracy_verdict()}, "
                    f"{firmness(c)})" for c in comparisons)
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
    >>> cost("md", "experiments-mnist1d-cnn1d").startswith("- `dash-warmstart --dataset mnist1d --seeds 0,1,2,3,4")
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
        f"DASH against {LABELS.get(c.other, c.other)}, {what}: A {va} ({_seeds(c)}), B {vb} ({_seeds(d)})"
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
    $ dash-warmstart --out results/experiments-features-patchcnn
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
    'Of the 400 r'
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
            va, vb = (f"{x.accuracy_verdict()} ({with_interval(x.accuracy, ' points')}, {_seeds(x)})" for x in (c, d))
        else:
            va, vb = (f"{x.steps_verdict()} ({with_interval(x.steps, '×', signed=False)}, {_seeds(x)})"
                      for x in (c, d))
        parts.append(f"DASH against {LABELS.get(c.other, c.other)}, {what}: A {va}, B {vb}")
    return f"The verdicts of {where} differ on: " + "; ".join(parts) + "; they agree on every other method."


def _seeds(c: Any) -> str:
    """``5 seeds`` (or ``1 seed``): how many seeds a comparison pairs."""
    n = len(c.seeds)
    return f"{n} seed{'s' if n != 1 else ''}"


def direction_sentence(fmt: str, *folders: str) -> str:
    """Whether DASH's direction is credited, from DASH's verdicts against the two controls of each folder.

    The direction is credited only where DASH's test accuracy at the last experiment is higher
    than that of *both* :data:`CONTROLS`: DASH's own factors shuffled within each tensor, and each
    tensor shrunk alike by DASH's mean factor for it. Otherwise the sentence says which control
    DASH is not distinguishable from (or below), with the interval and the number of seeds.
    With several folders, one line each.

    Examples
    --------
    >>> direction_sentence("md", "experiments-mnist1d-cnn1d").startswith(
    ...     "In `results/experiments-mnist1d-cnn1d` (5 seeds), **DASH's direction is")
    True
    """
    check_fmt(fmt)
    if not folders:
        raise ValueError("direction_sentence needs at least one results folder")
    lines = [_direction(fmt, folder) for folder in folders]
    return lines[0] if len(lines) == 1 else bullets(lines, fmt)


def _direction(fmt: str, folder: str) -> str:
    """The sentence of :func:`direction_sentence` for one folder."""
    data = load(folder)
    where = code("results/" + folder, fmt)
    by_other = {c.other: c for c in _comparisons(data)}
    missing = [m for m in CONTROLS if m not in by_other]
    if missing:
        names = join_words([LABELS.get(m, m) for m in missing])
        return (f"{where} has no run of {names} beside DASH, so it says nothing on whether DASH's direction "
                "matters.")
    controls = [by_other[m] for m in CONTROLS]
    n = sorted({len(c.seeds) for c in controls})
    seeds = " or ".join(map(str, n)) + (" seed" if n == [1] else " seeds")
    verdicts = {c.other: c.accuracy_verdict() for c in controls}

    def item(c: Any) -> str:
        return f"{LABELS.get(c.other, c.other)} ({with_interval(c.accuracy, ' points')}; {firmness(c)})"

    bold = "**"
    if all(v.endswith("higher") for v in verdicts.values()):
        return (
            f"In {where} ({seeds}), {bold}DASH's direction is credited{bold}: at the last experiment DASH's test "
            f"accuracy is higher than that of both controls, " + join_words([item(c) for c in controls])
            + " (DASH minus each, paired by seed, with its "
            f"{100 * LEVEL:.0f}% t interval), so which units DASH shrinks matters beyond how much each tensor "
            "shrinks."
        )
    if any(v.startswith("one seed") for v in verdicts.values()):
        return (
            f"In {where} (one seed), DASH's test accuracy minus that of the controls is "
            + join_words([f"{LABELS.get(c.other, c.other)} {with_interval(c.accuracy, ' points')}" for c in controls])
            + "; one seed gives no interval, so it says nothing on whether DASH's direction matters."
        )
    groups = by_verdict(controls)
    parts = []
    if groups["same"]:
        parts.append("not distinguishable from that of " + join_words([item(c) for c in groups["same"]]))
    if groups["lower"]:
        parts.append(f"{bold}lower than{bold} that of " + join_words([item(c) for c in groups["lower"]]))
    if groups["higher"]:
        parts.append("higher than that of " + join_words([item(c) for c in groups["higher"]]))
    return (
        f"In {where} ({seeds}), {bold}DASH's direction is not credited{bold}: at the last experiment DASH's test "
        "accuracy is " + "; ".join(parts) + f" (DASH minus each, paired by seed, with its {100 * LEVEL:.0f}% t "
        "interval). What separates DASH from the other methods there is how much each tensor shrinks, not "
        "which of its units."
    )


def seed_robustness(fmt: str, folder: str, *methods: str) -> str:
    """Per verdict of DASH against each method: the seeds, the verdict, and whether any single seed flips it.

    ``methods`` picks the comparisons (default: every method of the folder); the main verdicts
    of the default run are :data:`MAIN_VERDICTS`. Each seed is left out in turn
    (:meth:`~torch_dash_optim.experiments.stats.Comparison.flips`).

    Examples
    --------
    >>> seed_robustness("md", "experiments-mnist1d-cnn1d").splitlines()[0]
    '| DASH against | Seeds | DASH − other (points) | Verdict | Without one seed |'
    """
    check_fmt(fmt)
    data = load(folder)
    comparisons = _comparisons(data)
    if methods:
        unknown = [m for m in methods if m not in {c.other for c in comparisons}]
        if unknown:
            raise ValueError(f"{folder} has no comparison of DASH with {', '.join(unknown)}")
        comparisons = [c for m in methods for c in comparisons if c.other == m]
    header = ["DASH against", "Seeds", "DASH − other (points)", "Verdict", "Without one seed"]
    rows = []
    for c in comparisons:
        flips = c.flips()
        if len(c.seeds) < 2:
            robust = "no interval"
        elif not flips:
            robust = "the same verdict"
        else:
            robust = "; ".join(f"without {s}: {v}" for s, v in flips.items())
        rows.append([LABELS.get(c.other, c.other), str(len(c.seeds)), with_interval(c.accuracy, ""),
                     c.accuracy_verdict(), robust])
    firm = [c for c in comparisons if len(c.seeds) > 1 and not c.flips()]
    note = (
        f"DASH against each method at the last experiment, {code('results/' + folder, fmt)}: the mean of the "
        f"per-seed differences with its {100 * LEVEL:.0f}% t interval, the verdict, and that verdict recomputed "
        f"with each seed left out in turn. {len(firm)} of the {len(comparisons)} verdicts keep their reading "
        "whichever seed is left out."
    )
    return tabulate(header, rows, fmt, "Does any single seed decide a verdict?") + "\n\n" + note


def _data_rule(data: dict[str, Any]) -> str:
    """Which data each seed of a loaded folder trained on, from its ``data`` entry."""
    rule = data.get("data") or {}
    if rule.get("data_seed") is not None:
        return f"every seed on the data of data seed {rule['data_seed']}"
    if rule.get("per_seed"):
        return "each seed with its own data draw"
    return "every seed on the same data"


def setting(fmt: str, folder: str) -> str:
    """What a folder's run compared: the data and model, the methods, the seeds and their data, the experiments.

    Examples
    --------
    >>> setting("md", "experiments-quick").startswith("Features (the paper's data model), Patch CNN, 4 chunks, SGD: ")
    True
    """
    check_fmt(fmt)
    data = load(folder)
    records = sgd_records(data)
    methods = method_order({r["method"] for r in records})
    seeds = sorted({int(r["seed"]) for r in records})
    protocol = data["protocol"]
    names = join_words([code(m, fmt) for m in methods])
    return (
        f"{describe(data)}: {len(methods)} methods ({names}) on {len(seeds)} "
        f"seed{'s' if len(seeds) != 1 else ''} ({seed_list(seeds)}), {_data_rule(data)}; "
        f"{len(records)} experiments in all (method, seed and chunk), each trained until the train accuracy of an "
        f"epoch reaches {100 * protocol['threshold']:.1f}% (epoch cap {protocol['max_epochs']}); "
        f"DASH's floor λ = {protocol['dash_lambd']:g}. From {code('results/' + folder, fmt)}."
    )


def steps_table(fmt: str, folder: str) -> str:
    """Per method, the mean training steps at each experiment, the batches of each epoch, and the most epochs.

    A method that needs many more epochs at one experiment than at its neighbours shows a jump
    in its row; the last column gives the most epochs any seed needed at one experiment after
    the first, and where.

    Examples
    --------
    >>> print(steps_table("md", "experiments-quick").splitlines()[0])
    | Method | 1 | 2 | 3 | 4 | Most epochs (experiment) |
    """
    check_fmt(fmt)
    data = load(folder)
    records = sgd_records(data)
    protocol = data["protocol"]
    means = per_experiment(records, "steps")
    experiments = sorted({x for by_exp in means.values() for x in by_exp})
    sizes = {int(r["experiment"]): int(r["num_train"]) for r in records if r.get("num_train") is not None}
    header = ["Method", *map(str, experiments), "Most epochs (experiment)"]
    cells = []
    for x in experiments:
        split = batch_sizes(sizes[x], protocol["batch_size"]) if x in sizes else []
        cells.append(f"{len(split)} ({split[-1]})" if split else "?")
    rows = [["Batches per epoch (smallest batch)", *cells, ""]]
    for m in method_order(k[0] for k in means):
        later = [r for r in records if r["method"] == m and int(r["experiment"]) > 1]
        most = max(later, key=lambda r: (int(r["epochs"]), -int(r["experiment"])), default=None)
        peak = "-" if most is None else f"{int(most['epochs'])} ({int(most['experiment'])})"
        row = means[(m, "sgd")]
        rows.append([LABELS.get(m, m), *(f"{row[x]:.0f}" if x in row else "-" for x in experiments), peak])
    seeds = sorted({int(r["seed"]) for r in records})
    note = (
        f"Mean over seeds {seed_list(seeds)} of the optimizer steps at each experiment (columns: experiment), "
        f"{code('results/' + folder, fmt)}. Batches are balanced: an epoch of n examples takes "
        f"ceil(n / {protocol['batch_size']}) batches of n // k or n // k + 1 examples, so none holds less than half "
        "a batch. *Most epochs*: the largest number of epochs one seed needed at one experiment after the first "
        "(the first experiment starts every method from the same model), and at which experiment."
    )
    if fmt == "rst":
        note = note.replace("*Most epochs*", "**Most epochs**")
    return tabulate(header, rows, fmt, "Steps per experiment") + "\n\n" + note


def plasticity(fmt: str, folder: str) -> str:
    """The plasticity diagnostics of a folder: the penultimate features' rank per method and experiment, dormant units.

    Examples
    --------
    >>> print(plasticity("md", "experiments-quick").splitlines()[0])
    | Method | 1 | 2 | 3 | 4 |
    """
    check_fmt(fmt)
    data = load(folder)
    records = sgd_records(data)
    ranks = per_experiment(records, "feature_rank")
    if not ranks:
        return f"{code('results/' + folder, fmt)} holds no plasticity diagnostics (it ran with --no-diagnostics)."
    experiments = sorted({x for by_exp in ranks.values() for x in by_exp})
    rows = [[LABELS.get(m, m), *(f"{ranks[(m, 'sgd')].get(x, float('nan')):.1f}" for x in experiments)]
            for m in method_order(k[0] for k in ranks)]
    diagnostics = (data.get("harness") or {}).get("diagnostics") or {}
    tau = diagnostics.get("tau")
    named = f" (τ = {tau:g})" if tau is not None else ""
    shares = [float(r["dormant"]) for r in records if r.get("dormant") is not None]
    if shares and not any(shares):
        dormant = f"No unit was dormant{named} after any experiment of any method and seed."
    else:
        dormant_means = per_experiment(records, "dormant")
        worst = max(((m, x, v) for (m, _o), by in dormant_means.items() for x, v in by.items()), key=lambda t: t[2])
        dormant = (f"The share of dormant units{named}, mean over seeds, peaks at {100 * worst[2]:.1f}% "
                   f"({LABELS.get(worst[0], worst[0])}, experiment {worst[1]}).")
    spent = sum(float(r.get("diagnostics_seconds") or 0.0) for r in records)
    total = sum(float(r.get("seconds") or 0.0) for r in records)
    share = f" Measuring took {100 * spent / total:.1f}% of the experiments' wall time." if total else ""
    seeds = sorted({int(r["seed"]) for r in records})
    note = (
        f"The rank (srank, δ = 0.01) of the penultimate features after each experiment's training (columns: "
        f"experiment), mean over seeds {seed_list(seeds)}, measured on a fixed subsample of "
        f"{diagnostics.get('samples', '?')} training examples of each seed, {code('results/' + folder, fmt)}. "
        f"{dormant}{share}"
    )
    return tabulate(["Method", *map(str, experiments)], rows, fmt, "Feature rank after each experiment") + "\n\n" + note


def _times(name: str) -> tuple[str, float, float, list[dict[str, Any]]]:
    """A folder's command, its wall time (summed over invocations), CPU time of its experiments, and entries."""
    entries = read_provenance(folder_path(name))
    if not entries:
        raise FileNotFoundError(
            f"{folder_path(name) / 'provenance.json'} is missing; regenerate it with: "
            f"{FOLDERS.get(name) or OTHER_FOLDERS.get(name, '?')}"
        )
    command = FOLDERS.get(name) or OTHER_FOLDERS.get(name) or entries[-1].get("command", "?")
    wall = sum(float(e.get("wall_seconds") or 0.0) for e in entries)
    return command, wall, float(entries[-1].get("cpu_seconds") or 0.0), entries


def run_times(fmt: str, *folders: str) -> str:
    """The measured wall and CPU time of each folder's command (``provenance.json``), against its budget.

    The budgets (:data:`~scripts.render.format.BUDGETS`) are the targets of the 2-core machine
    that runs the published commands; a folder without one gets ``-``.

    Examples
    --------
    >>> run_times("md", "experiments-quick").splitlines()[0]
    '| Command | Wall time | CPU time of the experiments | Workers, machine | Budget | Within budget |'
    """
    check_fmt(fmt)
    if not folders:
        raise ValueError("run_times needs at least one results folder")
    header = ["Command", "Wall time", "CPU time of the experiments", "Workers, machine", "Budget", "Within budget"]
    rows = []
    for name in folders:
        command, wall, cpu, entries = _times(name)
        last = entries[-1]
        jobs = sorted({int(e.get("jobs") or 1) for e in entries})
        workers = " or ".join(map(str, jobs)) + (" worker" if jobs == [1] else " workers")
        machine = f"{workers} on {last.get('cpu', '?')} ({last.get('cpu_count', '?')} cores)"
        if len(entries) > 1:
            machine += f", {len(entries)} invocations"
        budget = BUDGETS.get(name)
        rows.append([code(command, fmt), duration(wall), duration(cpu), machine,
                     "-" if budget is None else f"{budget / 60:g} min",
                     "-" if budget is None else ("yes" if wall <= budget else "**no**")])
    note = (
        "Wall time: summed over the command's invocations (it depends on what else the machine ran); CPU time: of "
        "the experiments, summed over the worker processes; both as each folder recorded its invocations. The budgets "
        "are targets set before the runs."
    )
    return tabulate(header, rows, fmt, "What each published command cost") + "\n\n" + note


def _phrase(verdict: str) -> str:
    """A verdict of :mod:`~torch_dash_optim.experiments.stats` as the verb of a sentence."""
    if verdict.endswith("higher"):
        return "ends above"
    if verdict.endswith("lower"):
        return "ends below"
    return "is not distinguishable from" if verdict == "not distinguishable" else "has one seed, no interval, beside"


def headline(fmt: str, folder: str) -> str:
    """One sentence on a folder: does warm starting hurt, and where does DASH end against cold and warm.

    Examples
    --------
    >>> headline("md", "experiments-quick").startswith("On Features (the paper's data model), Patch CNN")
    True
    """
    check_fmt(fmt)
    data = load(folder)
    protocol = data["protocol"]
    records = sgd_records(data)
    seeds = sorted({int(r["seed"]) for r in records})
    where = (f"On {describe(data)} ({len(seeds)} seeds, {_data_rule(data)}, {code('results/' + folder, fmt)}), in "
             "test accuracy at the last experiment")
    cold = {c.other: c for c in compare(records, "cold", protocol["max_epochs"], protocol["threshold"])}
    dash = {c.other: c for c in _comparisons(data)}
    parts = []
    if "warm" in cold:
        c = cold["warm"]
        parts.append(f"the cold start {_phrase(c.accuracy_verdict())} the warm start (cold − "
                     f"warm {with_interval(c.accuracy, ' points')}; {firmness(c)})")
    for other in ("cold", "warm"):
        if other in dash:
            c = dash[other]
            parts.append(f"DASH {_phrase(c.accuracy_verdict())} the {other} start (DASH − "
                         f"{other} {with_interval(c.accuracy, ' points')}; {firmness(c)})")
    if not parts:
        return f"{where}, no cold, warm and DASH runs share a seed."
    stats = summarize(records)
    best = max(stats, key=lambda k: stats[k]["last_acc"][0])
    return (f"{where}: " + "; ".join(parts) + f". The highest mean test accuracy at the last experiment is "
            f"{LABELS.get(best[0], best[0])}'s ({100 * stats[best]['last_acc'][0]:.2f}%).")


#: The paper's aim: DASH above these methods in test accuracy, in at most this share of the cold start's steps.
PAPER_AIM: tuple[tuple[str, ...], float] = (("cold", "warm", "sp"), 0.6)


def paper_aim(fmt: str, folder: str) -> str:
    """The paper's aim against a folder's verdicts: DASH above cold, warm and S&P, in ≤ 0.6× cold's steps.

    An item is met (**yes**) when the interval says so, missed (**no**) when it says the opposite,
    and **not shown** when the interval cannot tell.

    Examples
    --------
    >>> paper_aim("md", "experiments-quick").splitlines()[0].startswith("- DASH above Cold (random init): ")
    True
    """
    check_fmt(fmt)
    data = load(folder)
    by_other = {c.other: c for c in _comparisons(data)}
    above, share = PAPER_AIM
    lines = []
    for other in above:
        c = by_other.get(other)
        if c is None:
            lines.append(f"DASH above {LABELS.get(other, other)}: not run in {code('results/' + folder, fmt)}")
            continue
        verdict = c.accuracy_verdict()
        met = "**yes**" if verdict.endswith("higher") else "**no**" if verdict.endswith("lower") else "**not shown**"
        lines.append(f"DASH above {LABELS.get(other, other)}: {met} ({with_interval(c.accuracy, ' points')}, "
                     f"{verdict}; {firmness(c)})")
    cold = by_other.get("cold")
    if cold is not None:
        iv = cold.steps
        if iv.low is None:
            met = "**not shown**"
        else:
            met = "**yes**" if iv.high <= share else "**no**" if iv.low > share else "**not shown**"
        lines.append(f"DASH in at most {share:g}× the cold start's steps: {met} "
                     f"({with_interval(iv, '×', signed=False)} the cold start's steps; {firmness(cold, 'steps')})")
    return bullets(lines, fmt)
