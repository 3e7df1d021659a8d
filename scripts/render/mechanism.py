"""The mechanism measurement: DASH's factors against what each unit carries.

``python -m torch_dash_optim.experiments.mechanism`` replays the default's DASH runs and writes
``mechanism.csv``: one row per seed, stage and layer. :func:`mechanism_table` tables it per
layer and stage, :func:`mechanism_summary` sums it up per layer, and :func:`mechanism_replay`
checks that the replay's test accuracy equals the published runs'.

Each renderer is named by a generated block's marker, e.g. ``.. generated:
scripts.render.mechanism:mechanism_table rst mechanism-features-patchcnn``, and is called as
:mod:`scripts.render.format` describes: ``fmt`` is ``"md"`` or ``"rst"``, then the folders; a
folder without ``mechanism.csv`` raises :class:`FileNotFoundError` naming the command that
writes it.
"""

from __future__ import annotations

import csv
import math
import statistics
from typing import Any

from .format import bullets, check_fmt, code, folder_file, load, sgd_records, signed_number, tabulate

__all__ = ["mechanism_replay", "mechanism_summary", "mechanism_table"]


def _mechanism_rows(folder: str) -> list[dict[str, Any]]:
    """The rows of a folder's ``mechanism.csv``, numbers as floats (NaN where a value is missing)."""
    path = folder_file(folder, "mechanism.csv")
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        for key, value in row.items():
            if key != "layer":
                row[key] = float(value) if value not in ("", "None") else math.nan
    return rows


def _fmean(values: list[float]) -> float:
    """The mean of the values that are not NaN (NaN if none is)."""
    kept = [v for v in values if not math.isnan(v)]
    return statistics.fmean(kept) if kept else math.nan


def _cell(value: float, digits: int) -> str:
    """A signed table cell, or ``undefined`` for NaN."""
    return "undefined" if math.isnan(value) else signed_number(value, digits)


def mechanism_table(fmt: str, folder: str) -> str:
    """DASH's factors against what each unit carries, per layer and stage, mean over the seeds.

    Reads ``mechanism.csv`` (:mod:`.mechanism`): one row per seed, stage and layer. A rank
    correlation that is undefined for a seed (every factor at the floor) is left out of the mean.

    Examples
    --------
    >>> mechanism_table("md", "mechanism-features-patchcnn").splitlines()[0].split(" | ")[:3]
    ['| Layer', 'Stage', 'Mean factor']
    """
    rows = _mechanism_rows(folder)
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    stages = sorted({int(r["experiment"]) for r in rows})
    seeds = sorted({int(r["seed"]) for r in rows})
    header = ["Layer", "Stage", "Mean factor", "At floor (%)", "ρ(factor, feature share)",
              "ρ(factor, rare energy)", "Factor gap"]
    out = []
    for layer in layers:
        for stage in stages:
            group = [r for r in rows if r["layer"] == layer and int(r["experiment"]) == stage]
            units = int(group[0]["units"])
            out.append([f"{layer} ({units} units)", str(stage), f"{_fmean([r['mean_factor'] for r in group]):.2f}",
                        f"{100 * _fmean([r['at_floor'] for r in group]):.0f}",
                        _cell(_fmean([r["rho_feature_share"] for r in group]), 2),
                        _cell(_fmean([r["rho_rare_energy"] for r in group]), 2),
                        _cell(_fmean([r["factor_gap"] for r in group]), 3)])
    note = (f"Means over seeds {', '.join(map(str, seeds))} from {code('results/' + folder + '/mechanism.csv', fmt)}; "
            "a stage is the experiment at whose start DASH shrinks. *Factor gap*: the mean factor of the half of "
            "the units with the larger feature share minus that of the other half.")
    if fmt == "rst":
        note = note.replace("*Factor gap*", "**Factor gap**")
    return tabulate(header, out, fmt, "DASH's factors against what each unit carries") + "\n\n" + note


def mechanism_summary(fmt: str, folder: str) -> str:
    """Per layer, over every seed and stage of ``mechanism.csv``: the floor, ρ and the factor gap.

    Examples
    --------
    >>> print(mechanism_summary("md", "mechanism-features-patchcnn").splitlines()[0])  # doctest: +ELLIPSIS
    - conv1 (64 units): at the floor ... % of the units (mean per stage); ρ(factor, feature share) averages ...
    """
    check_fmt(fmt)
    rows = _mechanism_rows(folder)
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


def mechanism_replay(fmt: str, folder: str, runs: str) -> str:
    """Whether the mechanism replay's DASH runs reproduce a results folder's, test accuracy by experiment.

    Examples
    --------
    >>> text = mechanism_replay("md", "mechanism-features-patchcnn", "experiments-features-patchcnn")
    >>> print(text)  # doctest: +ELLIPSIS
    The replay's DASH test accuracy equals that of `results/experiments-features-patchcnn` at 45 of the 45 ...
    """
    check_fmt(fmt)
    rows = _mechanism_rows(folder)
    published = {(int(r["seed"]), int(r["experiment"])): r["test_acc"]
                 for r in sgd_records(load(runs)) if r["method"] == "dash"}
    pairs = {(int(r["seed"]), int(r["experiment"])): r["test_acc"] for r in rows}
    same = sum(abs(acc - published.get(key, math.nan)) < 1e-9 for key, acc in pairs.items())
    return (f"The replay's DASH test accuracy equals that of {code('results/' + runs, fmt)} at {same} of the "
            f"{len(pairs)} (seed, stage) pairs of {code('results/' + folder + '/mechanism.csv', fmt)}.")
