"""The mechanism measurement: DASH's factors against what each unit carries, and the noise sweep.

``python -m torch_dash_optim.experiments.mechanism --out DIR --noise LEVELS`` runs DASH, measured
at every stage, beside its controls at each noise level of the ``features`` data, and writes
``mechanism.csv`` (one row per level, seed, stage and layer) and ``noise-<level>/experiments.json``
(every method's records). :func:`mechanism_table` tables one level per layer and stage,
:func:`mechanism_summary` sums it up per layer, :func:`mechanism_replay` checks that the measured
DASH's test accuracy equals a published run's; :func:`sweep_table` gives the first conv's
measures per level, :func:`sweep_accuracy` DASH against its controls per level, and
:func:`sweep_sentence` what that says on when DASH's direction matters.

Each renderer is named by a generated block's marker, e.g. ``.. generated:
scripts.render.mechanism:mechanism_table rst mechanism-noise-sweep 1.0``, and is called as
:mod:`scripts.render.format` describes: ``fmt`` is ``"md"`` or ``"rst"``, then the folders; a
folder without ``mechanism.csv`` raises :class:`FileNotFoundError` naming the command that
writes it.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from typing import Any

from torch_dash_optim.experiments.features import FeatureSpec
from torch_dash_optim.experiments.stats import LABELS, LEVEL, compare, firmness

from .format import (
    bullets,
    check_fmt,
    code,
    folder_file,
    load,
    seed_list,
    sgd_records,
    signed_number,
    tabulate,
    with_interval,
)

__all__ = [
    "mechanism_replay",
    "mechanism_summary",
    "mechanism_table",
    "sweep_accuracy",
    "sweep_sentence",
    "sweep_table",
]

#: DASH's controls, compared with it at every noise level.
_CONTROLS = ("shuffled", "uniform_matched")
#: A mean test accuracy at or above this is the ceiling of the sweep: nothing can be told apart there.
_CEILING = 0.995


def _mechanism_rows(folder: str, noise: str | None = None) -> list[dict[str, Any]]:
    """The rows of a folder's ``mechanism.csv`` (of one noise level), numbers as floats (NaN where missing).

    A file of several noise levels needs ``noise``; a level it does not hold is refused.
    """
    path = folder_file(folder, "mechanism.csv")
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        for key, value in row.items():
            if key != "layer":
                row[key] = float(value) if value not in ("", "None") else math.nan
    levels = sorted({r["noise_std"] for r in rows if not math.isnan(r.get("noise_std", math.nan))})
    if noise is not None:
        if float(noise) not in levels:
            raise ValueError(f"{path} holds no noise level {noise}; it holds {', '.join(f'{v:g}' for v in levels)}")
        rows = [r for r in rows if r["noise_std"] == float(noise)]
    elif len(levels) > 1:
        raise ValueError(f"{path} holds noise levels {', '.join(f'{v:g}' for v in levels)}; name one")
    return rows


def _fmean(values: list[float]) -> float:
    """The mean of the values that are not NaN (NaN if none is)."""
    kept = [v for v in values if not math.isnan(v)]
    return statistics.fmean(kept) if kept else math.nan


def _cell(value: float, digits: int) -> str:
    """A signed table cell, or ``undefined`` for NaN."""
    return "undefined" if math.isnan(value) else signed_number(value, digits)


def _plain(value: float, digits: int) -> str:
    """An unsigned table cell, or ``not measured`` for NaN."""
    return "not measured" if math.isnan(value) else f"{value:.{digits}f}"


def mechanism_table(fmt: str, folder: str, noise: str | None = None) -> str:
    """DASH's factors against what each unit carries, per layer and stage, mean over the seeds.

    Reads ``mechanism.csv`` (:mod:`.mechanism`): one row per seed, stage and layer, of the noise
    level ``noise`` (needed when the file holds several). A rank correlation that is undefined
    for a seed (every factor at the floor) is left out of the mean.

    Examples
    --------
    >>> mechanism_table("md", "mechanism-noise-sweep", "1.0").splitlines()[0].split(" | ")[:3]
    ['| Layer', 'Stage', 'Mean factor']
    """
    rows = _mechanism_rows(folder, noise)
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    stages = sorted({int(r["experiment"]) for r in rows})
    seeds = sorted({int(r["seed"]) for r in rows})
    header = ["Layer", "Stage", "Mean factor", "At floor (%)", "Median \\|cos\\|", "ρ(factor, feature share)",
              "ρ(factor, rare energy)", "Factor gap"]
    out = []
    for layer in layers:
        for stage in stages:
            group = [r for r in rows if r["layer"] == layer and int(r["experiment"]) == stage]
            units = int(group[0]["units"])
            out.append([f"{layer} ({units} units)", str(stage), f"{_fmean([r['mean_factor'] for r in group]):.2f}",
                        f"{100 * _fmean([r['at_floor'] for r in group]):.0f}",
                        _plain(_fmean([r.get("median_abs_cos", math.nan) for r in group]), 3),
                        _cell(_fmean([r["rho_feature_share"] for r in group]), 2),
                        _cell(_fmean([r["rho_rare_energy"] for r in group]), 2),
                        _cell(_fmean([r["factor_gap"] for r in group]), 3)])
    level = f" at noise std {float(noise):g}" if noise is not None else ""
    note = (f"Means over seeds {seed_list(seeds)} from {code('results/' + folder + '/mechanism.csv', fmt)}"
            f"{level}; a stage is the experiment at whose start DASH shrinks. *Median |cos|*: over the layer's units, "
            "of the cosine between a unit's weights and DASH's direction for it (DASH's factor is that cosine "
            "clamped to the floor and 1). *Factor gap*: the mean factor of the half of the units with the larger "
            "feature share minus that of the other half.")
    if fmt == "rst":
        note = note.replace("*Factor gap*", "**Factor gap**").replace("*Median |cos|*", "**Median \\|cos\\|**")
    return tabulate(header, out, fmt, "DASH's factors against what each unit carries") + "\n\n" + note


def mechanism_summary(fmt: str, folder: str, noise: str | None = None) -> str:
    """Per layer, over every seed and stage of ``mechanism.csv`` (of one noise level): the floor, ρ and the factor gap.

    Examples
    --------
    >>> print(mechanism_summary("md", "mechanism-noise-sweep", "1.0").splitlines()[0])  # doctest: +ELLIPSIS
    - conv1 (64 units): at the floor ... % of the units (mean per stage); ρ(factor, feature share) averages ...
    """
    check_fmt(fmt)
    rows = _mechanism_rows(folder, noise)
    lines = []
    for layer in dict.fromkeys(r["layer"] for r in rows):
        group = [r for r in rows if r["layer"] == layer]
        stages = sorted({int(r["experiment"]) for r in group})
        floor = [100 * _fmean([r["at_floor"] for r in group if int(r["experiment"]) == s]) for s in stages]
        rho = [r["rho_feature_share"] for r in group]
        defined = [v for v in rho if not math.isnan(v)]
        text = (f"{layer} ({int(group[0]['units'])} units): at the floor {min(floor):.0f}–{max(floor):.0f} % of "
                f"the units (mean per stage); ρ(factor, feature share) ")
        if defined:
            low, high, mean = signed_number(min(defined)), signed_number(max(defined)), statistics.fmean(defined)
            text += (f"averages {signed_number(mean, 3)} over the {len(defined)} of {len(rho)} seed-stage cases where "
                     f"it is defined, from {low} to {high}, positive in {sum(v > 0 for v in defined)}")
        else:
            text += "is undefined in every case"
        if len(defined) < len(rho):
            text += f" (undefined in {len(rho) - len(defined)}, where every factor sat at the floor)"
        gap = _fmean([r["factor_gap"] for r in group])
        text += f"; the factor gap averages {signed_number(gap, 3)}, on factors between the floor and 1."
        lines.append(text)
    return bullets(lines, fmt)


def mechanism_replay(fmt: str, folder: str, runs: str, noise: str | None = None) -> str:
    """Whether the measured DASH runs (of one noise level) reproduce a results folder's, test accuracy by experiment.

    Examples
    --------
    >>> text = mechanism_replay("md", "mechanism-noise-sweep", "experiments-features-patchcnn", "1.0")
    >>> print(text)  # doctest: +ELLIPSIS
    The replay's DASH test accuracy equals that of `results/experiments-features-patchcnn` at 72 of the 72 ...
    """
    check_fmt(fmt)
    rows = _mechanism_rows(folder, noise)
    published = {(int(r["seed"]), int(r["experiment"])): r["test_acc"]
                 for r in sgd_records(load(runs)) if r["method"] == "dash"}
    pairs = {(int(r["seed"]), int(r["experiment"])): r["test_acc"] for r in rows}
    same = sum(abs(acc - published.get(key, math.nan)) < 1e-9 for key, acc in pairs.items())
    return (f"The replay's DASH test accuracy equals that of {code('results/' + runs, fmt)} at {same} of the "
            f"{len(pairs)} (seed, stage) pairs of {code('results/' + folder + '/mechanism.csv', fmt)}.")


def _sweep(folder: str) -> tuple[dict[str, Any], dict[float, dict[str, Any]]]:
    """A sweep folder's settings (``sweep.json``) and, per noise level, its loaded ``noise-<level>`` folder."""
    settings = json.loads(folder_file(folder, "sweep.json").read_text(encoding="utf-8"))
    levels: dict[float, dict[str, Any]] = {}
    for level in settings["noise_levels"]:
        name = f"noise-{level:g}" if level != int(level) else f"noise-{level:.1f}"
        levels[float(level)] = load(f"{folder}/{name}")
    return settings, levels


def _ratio(settings: dict[str, Any], level: float) -> float:
    """The typical norm of a noise patch over a feature's, at a noise level of the sweep."""
    return FeatureSpec(**settings["features"], noise_std=level).noise_to_feature


def _random_share(settings: dict[str, Any]) -> float:
    """The share of a random direction's energy in the feature subspace: features / patch length."""
    spec = FeatureSpec(**settings["features"])
    return spec.num_features / spec.patch_dim


def sweep_table(fmt: str, folder: str) -> str:
    """Per noise level of a sweep: how the first conv's kernels and DASH's direction sit against the features.

    Means over seeds and stages of ``mechanism.csv``.

    Examples
    --------
    >>> sweep_table("md", "mechanism-noise-sweep").splitlines()[0].split(" | ")[:3]
    ['| Noise std', 'Noise / feature norm', 'conv1 at floor (%)']
    """
    check_fmt(fmt)
    settings, _levels = _sweep(folder)
    header = ["Noise std", "Noise / feature norm", "conv1 at floor (%)", "conv1 median |cos|",
              "Gradient energy in feature subspace (%)", "Best cos of a feature kernel",
              "ρ(factor, feature share), conv1", "ρ, conv2"]
    rows = []
    for level in settings["noise_levels"]:
        level_rows = _mechanism_rows(folder, str(level))
        c1 = [r for r in level_rows if r["layer"] == "conv1"]
        c2 = [r for r in level_rows if r["layer"] == "conv2"]
        rows.append([
            f"{level:g}", f"{_ratio(settings, level):.1f}", f"{100 * _fmean([r['at_floor'] for r in c1]):.0f}",
            f"{_fmean([r['median_abs_cos'] for r in c1]):.3f}",
            f"{100 * _fmean([r['grad_feature_share'] for r in c1]):.1f}",
            f"{_fmean([r['best_feature_cos'] for r in c1]):.3f}",
            _cell(_fmean([r["rho_feature_share"] for r in c1]), 2),
            _cell(_fmean([r["rho_feature_share"] for r in c2]), 2),
        ])
    lambd = settings["protocol"]["dash_lambd"]
    header_md = [h.replace("|", "\\|") for h in header]  # a literal bar in a cell, in either format
    note = (
        f"Means over seeds {seed_list(settings['seeds'])} and every stage, from "
        f"{code('results/' + folder + '/mechanism.csv', fmt)}. *Noise / feature norm*: the typical norm of a noise "
        "patch over that of a feature. *Gradient energy in feature subspace*: the share of the energy of DASH's "
        "direction for the first conv that lies in the span of the features (a random direction: "
        f"{100 * _random_share(settings):.1f}%). *Best cos of a feature kernel*: per kernel, the largest cosine any "
        "kernel lying in the feature subspace could have with DASH's direction for it (median over kernels); "
        f"below the floor λ = {lambd:g}, even a perfectly feature-tuned kernel sits at the floor."
    )
    if fmt == "rst":
        for term in ("Noise / feature norm", "Gradient energy in feature subspace", "Best cos of a feature kernel"):
            note = note.replace(f"*{term}*", f"**{term}**")
    return tabulate(header_md, rows, fmt, "The first conv against the features, per noise level") + "\n\n" + note


def _level_comparisons(data: dict[str, Any]) -> dict[str, Any]:
    """DASH against every other method of one level, by method."""
    protocol = data["protocol"]
    return {c.other: c for c in compare(sgd_records(data), "dash", protocol["max_epochs"], protocol["threshold"])}


def _last_mean(data: dict[str, Any], method: str) -> float:
    """A method's mean test accuracy at the last experiment of a loaded folder (NaN if it did not run)."""
    last = data["protocol"]["num_chunks"]
    values = [r["test_acc"] for r in sgd_records(data) if r["method"] == method and r["experiment"] == last]
    return statistics.fmean(values) if values else math.nan


def sweep_accuracy(fmt: str, folder: str) -> str:
    """Per noise level: every method's last test accuracy, and DASH against its two controls with intervals.

    Examples
    --------
    >>> sweep_accuracy("md", "mechanism-noise-sweep").splitlines()[0].split(" | ")[:3]
    ['| Noise std', 'Warm (%)', 'DASH (%)']
    """
    check_fmt(fmt)
    settings, levels = _sweep(folder)
    methods = [m for m in ("cold", "warm", "dash", *_CONTROLS) if m in settings["methods"]]
    header = ["Noise std", *(f"{LABELS.get(m, m)} (%)" for m in methods),
              *(f"DASH − {LABELS.get(m, m)} (points)" for m in _CONTROLS if m in settings["methods"])]
    rows = []
    for level, data in levels.items():
        comparisons = _level_comparisons(data)
        row = [f"{level:g}", *(f"{100 * _last_mean(data, m):.2f}" for m in methods)]
        for control in _CONTROLS:
            if control in comparisons:
                c = comparisons[control]
                row.append(f"{with_interval(c.accuracy, '')}, {c.accuracy_verdict()} ({firmness(c)})")
        rows.append(row)
    note = (
        f"Test accuracy at the last experiment, mean over seeds {seed_list(settings['seeds'])} (each seed "
        f"its own data draw), from {code('results/' + folder, fmt)}; DASH minus each control paired by seed, with "
        f"its {100 * LEVEL:.0f}% t interval and what leaving one seed out does to the verdict."
    )
    return tabulate(header, rows, fmt, "DASH against its controls, per noise level") + "\n\n" + note


def sweep_sentence(fmt: str, folder: str) -> str:
    """What the sweep says on when DASH's direction matters, level by level, from its verdicts and measures.

    DASH's direction is credited at a level only if DASH's test accuracy is higher than that of
    both controls there; a level where DASH and both controls end at 99.5% or above is named
    as the ceiling.

    Examples
    --------
    >>> sweep_sentence("md", "mechanism-noise-sweep").startswith("- At noise std 0.5 (a noise patch about")
    True
    """
    check_fmt(fmt)
    settings, levels = _sweep(folder)
    lambd = settings["protocol"]["dash_lambd"]
    lines = []
    for level, data in levels.items():
        c1 = [r for r in _mechanism_rows(folder, str(level)) if r["layer"] == "conv1"]
        share, best = _fmean([r["grad_feature_share"] for r in c1]), _fmean([r["best_feature_cos"] for r in c1])
        comparisons = _level_comparisons(data)
        controls = [comparisons[m] for m in _CONTROLS if m in comparisons]
        n = sorted({len(c.seeds) for c in controls})
        verdicts = [c.accuracy_verdict() for c in controls]
        if len(controls) < len(_CONTROLS):
            verdict = "the controls did not run, so nothing is said on DASH's direction"
        elif all(v.endswith("higher") for v in verdicts):
            verdict = "**DASH's direction is credited**: DASH beats both controls"
        else:
            verdict = "DASH's direction is not credited"
        parts = "; ".join(f"DASH − {LABELS.get(c.other, c.other)} {with_interval(c.accuracy, ' points')}, "
                          f"{c.accuracy_verdict()}" for c in controls)
        shrinks = [_last_mean(data, m) for m in ("dash", *_CONTROLS)]
        if controls and all(acc >= _CEILING for acc in shrinks):
            verdict += (f", and DASH and both controls end at the ceiling (at least {100 * _CEILING:.1f}% on average), "
                        "where accuracy cannot tell them apart")
        seeds = " or ".join(map(str, n)) + " seeds" if n else "no seeds"
        reach = "below" if best < lambd else "above"
        lines.append(
            f"At noise std {level:g} (a noise patch about {_ratio(settings, level):.1f} times a feature's norm), "
            f"{100 * share:.1f}% of the energy of DASH's direction for the first conv lies in the feature subspace "
            f"(a random direction: {100 * _random_share(settings):.1f}%), so a kernel tuned to the features could "
            f"reach a cosine of about {best:.2f}, {reach} the floor λ = {lambd:g}. {parts} ({seeds}): {verdict}."
        )
    return bullets(lines, fmt)
