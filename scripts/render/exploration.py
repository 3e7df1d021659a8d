"""The exploration runs and the warm-start gap: the renderers of what chose the default setting.

The default setting of the ``features`` runs was chosen by exploration runs
(``scripts/explore_features.py``, one line each in ``results/exploration-features/runs.jsonl``)
that looked for a setting where the cold start ends above the warm start; they ran before each
seed drew its own data (every run trained on the data of seed 0). :func:`exploration` tables
every run against the default's ``config.json``, and :func:`warm_gap` /
:func:`warm_gap_sentence` give the cold − warm gap of published folders with its t interval
(from :mod:`torch_dash_optim.experiments.stats`).

Each renderer is named by a generated block's marker, e.g. ``.. generated:
scripts.render.exploration:warm_gap rst experiments-features-patchcnn-untuned``, and is called
as :mod:`scripts.render.format` describes: ``fmt`` is ``"md"`` or ``"rst"``, then the folders; a
missing file raises :class:`FileNotFoundError` naming the command that writes it.
"""

from __future__ import annotations

import json
import statistics
from typing import Any

from torch_dash_optim.experiments.stats import LABELS, LEVEL, compare

from .format import (
    bullets,
    check_fmt,
    code,
    duration,
    folder_file,
    load,
    seed_list,
    sgd_records,
    signed_number,
    tabulate,
    with_interval,
)

__all__ = ["exploration", "warm_gap", "warm_gap_sentence"]


#: Each setting of an exploration run (``scripts/explore_features.py``), where the default's
#: ``config.json`` holds it, and how the table names it.
_SETTINGS: dict[str, tuple[tuple[str, ...], str]] = {
    "patch_dim": (("setup", "features", "patch_dim"), "patch length"),
    "noise_std": (("setup", "features", "noise_std"), "noise std"),
    "lr": (("protocol", "lr"), "learning rate"),
    "rare_freq": (("setup", "features", "rare_freq"), "rare-feature frequency"),
    "width": (("setup", "width"), "width"),
    "rare": (("setup", "features", "rare"), "rare features"),
    "patches": (("setup", "features", "patches"), "patches"),
    "feature_strength": (("setup", "features", "feature_strength"), "feature strength"),
    "num_train": (("setup", "features", "num_train"), "training inputs"),
    "num_test": (("setup", "features", "num_test"), "test inputs"),
    "chunks": (("protocol", "num_chunks"), "chunks"),
    "max_epochs": (("protocol", "max_epochs"), "epoch cap"),
    "batch": (("protocol", "batch_size"), "batch"),
}


def _differs(args: dict[str, Any], config: dict[str, Any]) -> str:
    """The settings of an exploration run that differ from the default's ``config.json``."""
    out = []
    for key, (where, label) in _SETTINGS.items():
        want: Any = config
        for part in where:
            want = want[part]
        if key in args and args[key] != want:
            out.append(f"{label} {args[key]:g}" if isinstance(args[key], float) else f"{label} {args[key]}")
    return ", ".join(out) or "default"


def _mean_diff(last: dict[str, list[float]], a: str, b: str) -> tuple[float, int, int] | None:
    """Mean of ``a − b`` over the seeds (points), how many are positive, and how many seeds."""
    if a not in last or b not in last:
        return None
    diffs = [x - y for x, y in zip(last[a], last[b], strict=True)]
    return statistics.fmean(diffs), sum(d > 0 for d in diffs), len(diffs)


def exploration(fmt: str, folder: str, default: str = "experiments-features-patchcnn") -> str:
    """Every exploration run of ``folder/runs.jsonl``, in file order, against the default setting.

    One row per run: what differs from the default (read from ``default``'s ``config.json``),
    the seeds, the mean last-experiment test accuracy of the cold and the warm start, the mean
    paired differences cold − warm (with on how many seeds it is positive), DASH − cold, DASH −
    S&P and DASH − FIRE ("—" where a method did not run), and the experiments that ended below
    the train-accuracy threshold (the epoch cap).

    Examples
    --------
    >>> print(exploration("md", "exploration-features").splitlines()[0])  # doctest: +ELLIPSIS
    | Run | Differs from the default | Seeds | Cold (%) | Warm (%) | Cold − warm | DASH − cold | ...
    """
    check_fmt(fmt)
    config = json.loads(folder_file(default, "config.json").read_text(encoding="utf-8"))
    runs = [json.loads(line) for line in folder_file(folder, "runs.jsonl").read_text().splitlines() if line]
    header = ["Run", "Differs from the default", "Seeds", "Cold (%)", "Warm (%)", "Cold − warm", "DASH − cold",
              "DASH − S&P", "DASH − FIRE", "Capped"]
    rows = []
    for run in runs:
        last = run["last"]
        gap = _mean_diff(last, "cold", "warm")
        gap_text = "—" if gap is None else signed_number(gap[0]) + (f" ({gap[1]} of {gap[2]})" if gap[2] > 1 else "")
        cells = [code(run["tag"], fmt), _differs(run["args"], config), run["args"]["seeds"].replace(",", ", ")]
        cells += [f"{statistics.fmean(last[m]):.2f}" if m in last else "—" for m in ("cold", "warm")]
        cells.append(gap_text)
        for other in ("cold", "sp", "fire"):
            d = _mean_diff(last, "dash", other)
            cells.append("—" if d is None else signed_number(d[0]))
        cells.append(str(len(run["capped"])) if run["capped"] else "no")
        rows.append(cells)
    cpu = sum(float(run.get("cpu", 0)) for run in runs)
    capped = sum(bool(run["capped"]) for run in runs)
    note = (
        f"{len(runs)} runs from {code('results/' + folder + '/runs.jsonl', fmt)}, in the order they ran; the "
        f"default is that of {code('results/' + default, fmt)}. Accuracies at the last experiment, mean over "
        "the seeds; differences in points, mean over the seeds of the paired differences. *Capped*: the number "
        "of experiments that ended below the train-accuracy threshold, at the epoch cap; "
        + ("no run hit the cap" if not capped else f"{capped} run(s) hit the cap")
        + f". {duration(cpu)} of CPU time in all."
    )
    if fmt == "rst":
        note = note.replace("*Capped*", "**Capped**")
    return tabulate(header, rows, fmt, "Every exploration run on ``features``" if fmt == "rst" else "") + "\n\n" + note


def _cold_warm(folder: str) -> Any:
    """A loaded folder and its cold-against-warm comparison (SGD); ValueError if it has none."""
    data = load(folder)
    protocol = data["protocol"]
    found = [c for c in compare(sgd_records(data), "cold", protocol["max_epochs"], protocol["threshold"])
             if c.other == "warm"]
    if not found:
        raise ValueError(f"results/{folder} has no cold and warm runs on the same seeds to compare")
    return data, found[0]


def _gap_text(c: Any) -> str:
    """The cold − warm gap with its interval, and on how many seeds it is positive."""
    positive = sum(p > 0 for p in c.points)
    return (f"{with_interval(c.accuracy, ' points')} (mean, {100 * LEVEL:.0f}% t interval), positive on "
            f"{positive} of {len(c.points)} seeds")


def warm_gap(fmt: str, folder: str) -> str:
    """Per seed, the cold start's and the warm start's last-experiment accuracy and their difference.

    Examples
    --------
    >>> print(warm_gap("md", "experiments-features-patchcnn-untuned").splitlines()[0])
    | Seed | Cold (%) | Warm (%) | Cold − warm |
    """
    data, c = _cold_warm(folder)
    last = {(r["method"], int(r["seed"])): r["test_acc"] for r in sgd_records(data)
            if r["experiment"] == data["protocol"]["num_chunks"]}
    rows = [[str(s), f"{100 * last[('cold', s)]:.2f}", f"{100 * last[('warm', s)]:.2f}", signed_number(p)]
            for s, p in zip(c.seeds, c.points, strict=True)]
    bold = "**"
    rows.append(["mean", f"{100 * statistics.fmean(last[('cold', s)] for s in c.seeds):.2f}",
                 f"{100 * statistics.fmean(last[('warm', s)] for s in c.seeds):.2f}",
                 f"{bold}{signed_number(c.accuracy.mean)}{bold}"])
    capped = sorted({m for m, seeds in c.capped.items() if seeds})
    note = (f"Cold − warm at the last experiment, {code('results/' + folder, fmt)}: {_gap_text(c)}. "
            + ("Neither stopped at the epoch cap." if not capped else
               "Stopped at the epoch cap: " + ", ".join(LABELS.get(m, m) for m in capped) + "."))
    return tabulate(["Seed", "Cold (%)", "Warm (%)", "Cold − warm"], rows, fmt,
                  "Cold − warm at the last experiment, per seed") + "\n\n" + note


def warm_gap_sentence(fmt: str, *folders: str) -> str:
    """One line per folder: how far the cold start ends above the warm start, and on how many seeds.

    Examples
    --------
    >>> print(warm_gap_sentence("md", "experiments-features-patchcnn"))  # doctest: +ELLIPSIS
    - `results/experiments-features-patchcnn` (seeds ...): cold − warm ... points [...] ...
    """
    check_fmt(fmt)
    lines = []
    for folder in folders:
        _data, c = _cold_warm(folder)
        lines.append(f"{code('results/' + folder, fmt)} (seeds {seed_list(c.seeds)}): cold − warm {_gap_text(c)}.")
    return bullets(lines, fmt)
