"""The tuning run: every method tuned on one budget, then compared tuned against tuned.

``python -m torch_dash_optim.experiments.tuning --out results/tuning-features`` chooses each
method's setting on validation data held out of the training pool of the tuning seeds, then
runs every method at its default and at its choice on other seeds (each its own data draw).
It writes ``tuning.json`` and the protocol's results folders under ``tune/`` and ``report/``.

:func:`tuning_grid` tables the validation accuracy of every configuration, :func:`tuning_results`
each method at its default and at its choice on the report seeds, :func:`tuning_verdicts` DASH
tuned against every other method tuned, and :func:`tuning_cost` what the command cost. Each
renderer is named by a generated block's marker, e.g. ``.. generated:
scripts.render.tuning:tuning_results rst tuning-features``, and is called as
:mod:`scripts.render.format` describes.
"""

from __future__ import annotations

import json
import statistics
from typing import Any

from torch_dash_optim.experiments.provenance import read_provenance
from torch_dash_optim.experiments.stats import LABELS, LEVEL, compare, t_interval, verdict_lines
from torch_dash_optim.experiments.tuning import tuned_records

from .format import (
    bullets,
    by_verdict,
    check_fmt,
    code,
    duration,
    folder_file,
    folder_path,
    join_words,
    seed_list,
    tabulate,
    with_interval,
)

__all__ = ["tuning_cost", "tuning_grid", "tuning_results", "tuning_sentence", "tuning_verdicts"]

_NAMES = {"dash_lambd": "λ", "sp_shrink": "shrink", "sp_sigma": "σ", "fire_alpha": "α", "l2_init": "strength",
          "uniform_factor": "factor"}


def _load(folder: str) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """``tuning.json`` and the report's records by arm (``dash@default``, ``dash@tuned``, ...)."""
    result = json.loads(folder_file(folder, "tuning.json").read_text(encoding="utf-8"))
    cache: dict[str, list[dict[str, Any]]] = {}
    report: dict[str, list[dict[str, Any]]] = {}
    for arm in result["arms"]:
        sub = arm["folder"]
        if sub not in cache:
            data = json.loads(folder_file(folder, f"{sub}/experiments.json").read_text(encoding="utf-8"))
            cache[sub] = [r for r in data["records"] if r["optimizer"] == "sgd"]
        report[arm["name"]] = [r for r in cache[sub] if r["method"] == arm["method"]]
    return result, report


def _setting(settings: dict[str, Any]) -> str:
    """A configuration in words: ``λ 0.3``, ``shrink 0.3, σ 0.01``, ``DASH's mean factor``, ``none``."""
    if not settings:
        return "none"
    parts = []
    for k, v in settings.items():
        parts.append("DASH's mean factor" if k == "uniform_factor" and v is None else f"{_NAMES.get(k, k)} {v:g}")
    return ", ".join(parts)


def _edges(result: dict[str, Any]) -> str:
    """The choices that sit at an end of their grid, in words ('' if none does)."""
    items = []
    for method, chosen in result["chosen"].items():
        ends = []
        for key, value in (chosen or {}).items():
            tried = sorted({c[key] for c in result["grid"].get(method, []) if c.get(key) is not None})
            if value is None or len(tried) < 2:
                continue
            if value == tried[-1]:
                ends.append(f"{_NAMES.get(key, key)} {value:g}, the largest tried")
            elif value == tried[0]:
                ends.append(f"{_NAMES.get(key, key)} {value:g}, the smallest tried")
        if ends:
            items.append(f"{LABELS.get(method, method)} ({'; '.join(ends)})")
    if not items:
        return ""
    return ("Chosen at an end of the grid (a setting beyond it was not tried, and might do better): "
            + "; ".join(items) + ".")


def tuning_grid(fmt: str, folder: str) -> str:
    """Every configuration of every tuned method: its validation accuracy and steps, the default and the choice.

    Examples
    --------
    >>> tuning_grid("md", "tuning-features").splitlines()[0]
    '| Method | Configuration | Validation acc (%) | Steps | Default, chosen, capped |'
    """
    check_fmt(fmt)
    result, _report = _load(folder)
    header = ["Method", "Configuration", "Validation acc (%)", "Steps", "Default, chosen, capped"]
    rows = []
    for method, configs in result["validation"].items():
        for row in configs:
            chosen = row["settings"] == result["chosen"][method]
            marks = [w for w, on in (("default", row["default"]), ("chosen", chosen)) if on]
            if row.get("capped"):
                marks.append(f"capped in {row['capped']} experiments, not eligible")
            rows.append([LABELS.get(method, method), _setting(row["settings"]), f"{100 * row['val_acc']:.2f}",
                         f"{row['steps']:.0f}", ", ".join(marks) or "-"])
    sizes = sorted({len(v) for v in result["grid"].values()})
    note = (
        f"Each tuned method's {' or '.join(map(str, sizes))} configurations, run on tuning seeds "
        f"{seed_list(result['tune_seeds'])}: each seed draws its own data, {result['val_size']} examples "
        "of its training pool are held out as the validation set, and the protocol runs on the rest. Validation "
        "accuracy at the last experiment and training steps of that experiment, means over the tuning seeds; the "
        "choice is the highest validation accuracy (ties: fewer steps, then the default) among the configurations "
        "whose tuning runs never stopped at the epoch cap below the train-accuracy threshold. The test sets are not "
        f"read. From {code('results/' + folder + '/tuning.json', fmt)}."
    )
    return tabulate(header, rows, fmt, "Every configuration, on held-out data") + "\n\n" + note


def _last(records: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Each seed's record of its last experiment."""
    out: dict[int, dict[str, Any]] = {}
    for r in records:
        seed = int(r["seed"])
        if seed not in out or r["experiment"] > out[seed]["experiment"]:
            out[seed] = r
    return out


def tuning_results(fmt: str, folder: str) -> str:
    """Each method on the report seeds at its default and at its choice, and tuned − default paired by seed.

    Examples
    --------
    >>> tuning_results("md", "tuning-features").splitlines()[0]
    '| Method | Default | Test acc (%) | Chosen | Test acc (%) | Tuned − default (points) |'
    """
    check_fmt(fmt)
    result, report = _load(folder)
    header = ["Method", "Default", "Test acc (%)", "Chosen", "Test acc (%)", "Tuned − default (points)"]
    rows = []
    methods = list(dict.fromkeys(name.split("@")[0] for name in report))
    defaults = {a["method"]: a["settings"] for a in result["arms"] if a["kind"] == "default"}
    for method in methods:
        default = _last(report[f"{method}@default"])
        tuned_arm = report.get(f"{method}@tuned")
        tuned = _last(tuned_arm) if tuned_arm is not None else default
        acc_d = statistics.fmean(100 * r["test_acc"] for r in default.values())
        acc_t = statistics.fmean(100 * r["test_acc"] for r in tuned.values())
        chosen = result["chosen"].get(method)
        if method not in result["chosen"]:
            rows.append([LABELS.get(method, method), "no hyperparameter", f"{acc_d:.2f}", "-", "-", "-"])
            continue
        if tuned_arm is None:
            diff = "the default was chosen"
        else:
            seeds = sorted(set(default) & set(tuned))
            iv = t_interval([100 * (tuned[s]["test_acc"] - default[s]["test_acc"]) for s in seeds])
            verdict = ("not distinguishable" if iv.contains(0.0) else "tuned higher" if iv.mean > 0 else "tuned lower")
            verdict = "one seed: no interval" if iv.low is None else verdict
            diff = f"{with_interval(iv, '')}, {verdict} ({len(seeds)} seeds)"
        rows.append([LABELS.get(method, method), _setting(defaults.get(method, {})), f"{acc_d:.2f}",
                     _setting(chosen or {}), f"{acc_t:.2f}", diff])
    for arm in (a for a in result["arms"] if a["kind"] == "dash-lambda"):
        records = _last(report[arm["name"]])
        acc = statistics.fmean(100 * r["test_acc"] for r in records.values())
        rows.append([f"{LABELS.get(arm['method'], arm['method'])} at DASH's choice", "-", "-",
                     _setting(arm["settings"]), f"{acc:.2f}", "-"])
    seeds = result["report_seeds"]
    note = (
        f"Test accuracy at the last experiment, mean over report seeds {seed_list(seeds)} (other seeds "
        "than the tuning ones, each its own data draw, the whole training pool and the test set). *Tuned − "
        f"default*: paired by seed, with its {100 * LEVEL:.0f}% t interval. From {code('results/' + folder, fmt)}. "
        + _edges(result)
    ).rstrip()
    if fmt == "rst":
        note = note.replace("*Tuned − default*", "**Tuned − default**")
    return tabulate(header, rows, fmt, "Each method at its default and at its choice") + "\n\n" + note


def tuning_verdicts(fmt: str, folder: str, kind: str = "tuned") -> str:
    """DASH against every other method, each at its choice (``kind="tuned"``) or each at its default.

    The controls of DASH's direction also appear at DASH's chosen λ where they chose another.

    Examples
    --------
    >>> tuning_verdicts("md", "tuning-features").startswith("- DASH − Cold (random init): ")
    True
    """
    check_fmt(fmt)
    if kind not in ("tuned", "default"):
        raise ValueError(f"kind={kind!r} must be 'tuned' or 'default'")
    result, report = _load(folder)
    records = tuned_records(report, kind)
    protocol = result["protocol"]
    lines = verdict_lines(compare(records, "dash", protocol["max_epochs"], protocol["threshold"]),
                          protocol["max_epochs"])
    if kind == "tuned":
        dash = tuned_records({k: v for k, v in report.items() if k.startswith("dash@")}, "tuned")
        for arm in (a for a in result["arms"] if a["kind"] == "dash-lambda"):
            at = [{**r, "method": f"{arm['method']}_at_dash"} for r in report[arm["name"]]]
            for c in compare(dash + at, "dash", protocol["max_epochs"], protocol["threshold"]):
                line = verdict_lines([c], protocol["max_epochs"])[0]
                lines.append(line.replace(c.other, f"{LABELS.get(arm['method'], arm['method'])} at DASH's λ"))
    return bullets(lines, fmt)


def tuning_sentence(fmt: str, folder: str) -> str:
    """The tuning run in one sentence: DASH at its choice against every other method at its choice.

    Examples
    --------
    >>> tuning_sentence("md", "tuning-features").startswith("With every method tuned on one budget (")
    True
    """
    check_fmt(fmt)
    result, report = _load(folder)
    protocol = result["protocol"]
    comparisons = compare(tuned_records(report, "tuned"), "dash", protocol["max_epochs"], protocol["threshold"])
    groups = by_verdict(
        comparisons, lambda c: f"{LABELS.get(c.other, c.other)} ({with_interval(c.accuracy, ' points')})"
    )

    parts = []
    if groups["higher"]:
        parts.append("**higher than** that of " + join_words(groups["higher"]))
    if groups["lower"]:
        parts.append("**lower than** that of " + join_words(groups["lower"]))
    if groups["same"]:
        parts.append("not distinguishable from that of " + join_words(groups["same"]))
    sizes = sorted({len(v) for v in result["grid"].values()})
    n = sorted({len(c.seeds) for c in comparisons})
    firm = sum(not c.flips() for c in comparisons)
    held = ("every one of these verdicts holds with any one seed left out" if firm == len(comparisons) else
            f"{firm} of these {len(comparisons)} verdicts hold with any one seed left out")
    dash = result["chosen"].get("dash")
    return (
        f"With every method tuned on one budget ({' or '.join(map(str, sizes))} configurations each, chosen on "
        f"validation data held out of tuning seeds {seed_list(result['tune_seeds'])}) and reported on "
        f"{' or '.join(map(str, n))} other seeds, each its own data draw, DASH at its choice "
        f"({_setting(dash or {})}) ends with a test accuracy " + "; ".join(parts)
        + f", each at its own choice (DASH minus each, paired by seed, with its {100 * LEVEL:.0f}% t interval); "
        f"{held}. From {code('results/' + folder, fmt)}. " + _edges(result)
    ).rstrip()


def tuning_cost(fmt: str, folder: str) -> str:
    """The tuning command's cost, from ``provenance.json``: CPU time of its experiments and wall time.

    Examples
    --------
    >>> tuning_cost("md", "tuning-features").startswith("The tuning command (`python -m")
    True
    """
    check_fmt(fmt)
    result, _report = _load(folder)
    entries = read_provenance(folder_path(folder))
    if not entries:
        return f"{code('results/' + folder, fmt)} has no provenance.json, so no recorded time."
    cpu = float(entries[-1].get("cpu_seconds") or 0.0)
    wall = sum(float(e.get("wall_seconds") or 0.0) for e in entries)
    last = entries[-1]
    runs = len(result["tune_seeds"]) * sum(len(v) for v in result["grid"].values())
    arms = len(result["arms"])
    return (
        f"The tuning command ({code(last.get('command', '?'), fmt)}) ran {runs} tuning runs (method, configuration "
        f"and tuning seed) and {arms} report arms on {len(result['report_seeds'])} seeds: {duration(cpu)} of CPU "
        f"time in the experiments, {duration(wall)} of wall time with {last.get('jobs', '?')} workers on "
        f"{last.get('cpu', '?')} ({last.get('cpu_count', '?')} cores), torch {last.get('torch', '?')}."
        + (f" Over {len(entries)} invocations." if len(entries) > 1 else "")
    )
