"""Every method tuned on one budget, chosen on held-out data, reported on other seeds and other data.

Each method with a hyperparameter gets the same number of configurations (:data:`GRID`, six
each):

* ``dash``: its floor λ, from 0.05 to 0.5;
* ``uniform_matched`` and ``shuffled`` (the controls of DASH's direction): DASH's λ, which
  their factors come from;
* ``uniform_global``: its factor, DASH's mean factor at each stage or a fixed one;
* ``sp``: Shrink & Perturb's shrink x noise σ;
* ``fire``: FIRE's mixing weight α;
* ``l2_init``: the strength of the penalty.

``cold`` and ``warm`` have no hyperparameter (:data:`UNTUNED`). The methods read disjoint
fields of :class:`~torch_dash_optim.experiments.config.ProtocolConfig` (the controls share
DASH's λ grid), so configuration ``k`` of every method is one config and one
:func:`~torch_dash_optim.experiments.run_protocol` call.

**Choosing.** On each *tuning seed*, the seed's own draw of the data set is split: a validation
set of ``val_size`` examples is held out of the training pool, the protocol runs on the rest
(its chunks) and is tested on the validation set. The test set is never read. Each method's
setting is the one with the highest validation accuracy at the last experiment, averaged over
the tuning seeds (ties: fewer training steps, then the default), among the configurations
whose tuning runs never stopped at the epoch cap below the train-accuracy threshold.

**Reporting.** On the *report seeds* (other seeds, each with its own draw, the whole training
pool and the test set), every method runs at its default and at its chosen setting; the
controls also run at DASH's chosen λ when they chose another. The renderers in the repository's
``scripts/render/tuning.py`` compare DASH tuned against every other method tuned, and each
method tuned against its default, paired by seed.

Run it with ``python -m torch_dash_optim.experiments.tuning --out results/tuning-features``. It
writes ``tune/config-<k>/`` and ``report/<arm group>/`` (results folders of
:func:`~torch_dash_optim.experiments.run_protocol`), ``tuning.json`` (the grid, the seeds, the
validation accuracy of every configuration, the choices and the report arms),
``tuning.md`` and ``provenance.json``; ``--resume`` continues an interrupted run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from .config import DATASET_PRESETS, DEFAULT_SEEDS, MODEL_WIDTHS, ProtocolConfig, parse_seeds
from .datasets import DataSource
from .methods import BUILTIN
from .models import build_model
from .protocol import run_protocol
from .provenance import add_invocation
from .stats import capped, compare, verdict_lines

__all__ = [
    "GRID",
    "HeldOut",
    "TUNE_SEEDS",
    "UNTUNED",
    "Arm",
    "base_config",
    "choose",
    "grid_config",
    "report_arms",
    "main",
    "setting",
    "tune",
    "tuned_records",
]

_LAMBDAS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5)

#: The configurations of each tuned method, as the
#: :class:`~torch_dash_optim.experiments.config.ProtocolConfig` fields it reads and their values;
#: every method gets the same number.
GRID: dict[str, tuple[dict[str, Any], ...]] = {
    "dash": tuple({"dash_lambd": v} for v in _LAMBDAS),
    "uniform_matched": tuple({"dash_lambd": v} for v in _LAMBDAS),
    "shuffled": tuple({"dash_lambd": v} for v in _LAMBDAS),
    "uniform_global": tuple({"uniform_factor": v} for v in (None, 0.2, 0.35, 0.5, 0.65, 0.8)),
    "sp": tuple({"sp_shrink": a, "sp_sigma": s} for a in (0.1, 0.3, 0.6) for s in (0.01, 0.05)),
    "fire": tuple({"fire_alpha": v} for v in (0.1, 0.25, 0.5, 0.75, 0.9, 1.0)),
    "l2_init": tuple({"l2_init": v} for v in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)),
}
#: The methods without a hyperparameter, run at their (only) setting in the report.
UNTUNED: tuple[str, ...] = ("cold", "warm")
#: The seeds the settings are chosen on (none of them is a report seed by default).
TUNE_SEEDS: tuple[int, ...] = (1000, 1001, 1002, 1003, 1004)


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """A data source split for tuning: ``held_out(seed)`` is ``(training pool minus validation, validation)``.

    The validation set is ``size`` examples of the seed's training pool, drawn with a generator
    of its own (seeded from the data seed); the test set is never read.

    Examples
    --------
    >>> from torch.utils.data import TensorDataset
    >>> source = lambda seed: (TensorDataset(torch.arange(10.0)), TensorDataset(torch.zeros(3)))
    >>> fit, val = HeldOut(source, 4)(0)
    >>> len(fit), len(val), sorted(fit.indices + val.indices) == list(range(10))
    (6, 4, True)
    """

    source: Callable[[int], tuple[Dataset, Dataset]]
    size: int

    def __call__(self, seed: int) -> tuple[Subset, Subset]:
        train, _test = self.source(seed)
        n = len(train)  # type: ignore[arg-type]
        if not 0 < self.size < n:
            raise ValueError(f"val_size={self.size} must be between 1 and {n - 1}, the training pool's size minus 1")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(2**32 + seed)).tolist()
        return Subset(train, order[self.size :]), Subset(train, order[: self.size])


@dataclasses.dataclass(frozen=True)
class Arm:
    """One method at one setting, in the report: ``name`` (e.g. ``dash@tuned``), the method and its settings.

    Examples
    --------
    >>> Arm("dash@tuned", "dash", "tuned", {"dash_lambd": 0.5}).settings
    {'dash_lambd': 0.5}
    """

    name: str
    method: str
    kind: str
    settings: dict[str, Any]


def base_config(dataset: str = "features") -> ProtocolConfig:
    """The protocol settings of ``dash-warmstart --dataset DATASET`` (its preset), every method at its default.

    Examples
    --------
    >>> base_config().lr, base_config().l2_init
    (0.01, 0.001)
    """
    preset = DATASET_PRESETS[dataset]
    return ProtocolConfig(
        num_chunks=preset["chunks"], lr=preset["lr"], max_epochs=preset["max_epochs"], l2_init=preset["l2_init"]
    )


def _entry(config: ProtocolConfig, method: str) -> dict[str, Any]:
    """The fields of ``config`` that ``method`` reads, as in :data:`GRID`."""
    return {k: getattr(config, k) for k in GRID[method][0]}


def _merge(base: ProtocolConfig, entries: Sequence[dict[str, Any]]) -> ProtocolConfig:
    """``base`` with every entry's fields set; two entries that set one field to two values are refused."""
    fields: dict[str, Any] = {}
    for entry in entries:
        for k, v in entry.items():
            if k in fields and fields[k] != v:
                raise ValueError(f"two settings of {k}: {fields[k]!r} and {v!r}")
            fields[k] = v
    return dataclasses.replace(base, **fields)


def grid_config(base: ProtocolConfig, k: int) -> ProtocolConfig:
    """Configuration ``k`` of every tuned method at once (their fields do not overlap, DASH's λ aside).

    Examples
    --------
    >>> c = grid_config(base_config(), 0)
    >>> c.dash_lambd, c.uniform_factor, c.fire_alpha, c.l2_init
    (0.05, None, 0.1, 0.0001)
    """
    return _merge(base, [GRID[m][k] for m in GRID])


def _last(records: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """Each run's record of its last experiment, by ``(method, seed)``."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for r in records:
        key = (r["method"], int(r["seed"]))
        if key not in out or r["experiment"] > out[key]["experiment"]:
            out[key] = r
    return out


def choose(
    records_by_config: Sequence[list[dict[str, Any]]], base: ProtocolConfig
) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Each tuned method's setting: the highest mean validation accuracy at the last experiment.

    Only configurations whose tuning runs never stopped at the epoch cap below the
    train-accuracy threshold compete (the protocol trains every experiment to the threshold; a
    capped run is not a run of the protocol); if every configuration of a method was capped,
    all compete.

    Parameters
    ----------
    records_by_config:
        Per configuration ``k`` of :data:`GRID`, the tuning runs' records.
    base:
        The defaults, the epoch cap and the threshold (a tie is broken by fewer steps, then in
        favour of the default).

    Returns
    -------
    tuple
        The chosen entry per method, and per method one summary per configuration:
        ``settings``, ``val_acc`` (mean over seeds), ``steps`` (mean), ``seeds``, ``default``
        and ``capped`` (the tuning experiments that stopped at the cap).

    Examples
    --------
    >>> recs = [[{"method": "dash", "seed": 0, "experiment": 2, "test_acc": a, "steps": 10, "epochs": e,
    ...           "train_acc": 1.0 if e < 300 else 0.9}]
    ...         for a, e in ((0.5, 5), (0.7, 5), (0.6, 5), (0.7, 5), (0.9, 300), (0.1, 5))]
    >>> chosen, table = choose(recs, base_config())
    >>> chosen["dash"], [row["val_acc"] for row in table["dash"]][:2], table["dash"][4]["capped"]
    ({'dash_lambd': 0.3}, [0.5, 0.7], 1)
    """
    table: dict[str, list[dict[str, Any]]] = {}
    chosen: dict[str, dict[str, Any]] = {}
    for method, entries in GRID.items():
        default = _entry(base, method)
        rows = []
        for k, entry in enumerate(entries):
            runs = [r for r in records_by_config[k] if r["method"] == method]
            last = [r for (m, _s), r in _last(runs).items() if m == method]
            if not last:
                continue
            rows.append({
                "settings": dict(entry),
                "val_acc": statistics.fmean(r["test_acc"] for r in last),
                "steps": statistics.fmean(r["steps"] for r in last),
                "seeds": sorted(int(r["seed"]) for r in last),
                "default": entry == default,
                "capped": sum(capped(r, base.max_epochs, base.threshold) for r in runs),
            })
        if not rows:
            continue
        eligible = [row for row in rows if not row["capped"]] or rows
        best = max(eligible, key=lambda row: (round(row["val_acc"], 9), -row["steps"], row["default"]))
        chosen[method] = dict(best["settings"])
        table[method] = rows
    return chosen, table


def report_arms(chosen: dict[str, dict[str, Any]], base: ProtocolConfig) -> list[Arm]:
    """The report's arms: every method at its default, the tuned ones at their choice, and the controls at DASH's λ.

    An arm whose settings equal another arm's of the same method is left out (a method whose
    choice is its default runs once, as ``<method>@default``).

    Examples
    --------
    >>> arms = report_arms({"dash": {"dash_lambd": 0.1}, "shuffled": {"dash_lambd": 0.3}}, base_config())
    >>> [a.name for a in arms if a.method in ("dash", "shuffled")]
    ['dash@default', 'shuffled@default', 'dash@tuned', 'shuffled@dash-lambda']
    """
    arms = [Arm(f"{m}@default", m, "default", {}) for m in UNTUNED]
    for method in GRID:
        arms.append(Arm(f"{method}@default", method, "default", _entry(base, method)))
    for method, entry in chosen.items():
        if entry != _entry(base, method):
            arms.append(Arm(f"{method}@tuned", method, "tuned", dict(entry)))
    order = list(dict.fromkeys([*UNTUNED, *GRID]))
    lambd = chosen.get("dash", _entry(base, "dash"))
    for control in ("uniform_matched", "shuffled"):
        own = chosen.get(control, _entry(base, control))
        if control in GRID and lambd != own and lambd != _entry(base, control):
            arms.append(Arm(f"{control}@dash-lambda", control, "dash-lambda", dict(lambd)))
    arms.sort(key=lambda a: (("default", "tuned", "dash-lambda").index(a.kind), order.index(a.method)))
    return arms


def _groups(arms: Sequence[Arm], base: ProtocolConfig) -> list[tuple[ProtocolConfig, list[Arm]]]:
    """The arms in groups that one protocol call can run: one arm per method, no two values of one field."""
    groups: list[tuple[dict[str, Any], list[Arm]]] = []
    for arm in arms:
        for fields, members in groups:
            clash = any(k in fields and fields[k] != v for k, v in arm.settings.items())
            if arm.method not in {a.method for a in members} and not clash:
                fields.update(arm.settings)
                members.append(arm)
                break
        else:
            groups.append((dict(arm.settings), [arm]))
    return [(_merge(base, [fields]), members) for fields, members in groups]


def _seeds_text(seeds: Sequence[int]) -> str:
    return ",".join(map(str, seeds))


def setting(dataset: str = "features", data_dir: str | Path | None = None) -> dict[str, Any]:
    """What :func:`tune` needs of a data set, as ``dash-warmstart --dataset DATASET`` sets it up.

    Returns
    -------
    dict
        ``source`` (a :class:`~torch_dash_optim.experiments.datasets.DataSource`), ``factory``
        (the preset's model), ``base`` (:func:`base_config`) and ``setup`` (its description).

    Examples
    --------
    >>> s = setting("features")
    >>> s["setup"]["model"], s["base"].num_chunks
    ('patchcnn', 10)
    """
    preset = DATASET_PRESETS[dataset]
    source = DataSource(dataset, data_dir, train_size=preset["train_size"])
    split = source.split(0)
    width = preset["width"] or MODEL_WIDTHS.get(preset["model"], 512)
    extra = {"patch_dim": split.patch_dim} if split.patch_dim is not None else {}
    factory = build_model(preset["model"], split.input_shape, split.num_classes, width=width, depth=preset["depth"],
                          batch_norm=preset["mlp_bn"], **extra)
    setup = {"dataset": dataset, "model": preset["model"], "width": width, "train_size": preset["train_size"]}
    return {"source": source, "factory": factory, "base": base_config(dataset), "setup": setup}


def tune(
    out: str | Path,
    source: Callable[[int], tuple[Dataset, Dataset]],
    factory: Callable[[], Any],
    base: ProtocolConfig,
    *,
    setup: dict[str, Any] | None = None,
    tune_seeds: Sequence[int] = TUNE_SEEDS,
    report_seeds: Sequence[int] = DEFAULT_SEEDS,
    val_size: int = 400,
    jobs: int = 1,
    resume: bool = False,
    progress: bool = False,
    command: str = "",
) -> dict[str, Any]:
    """Tune every method on the tuning seeds' validation sets, then run the report arms on the report seeds.

    Parameters
    ----------
    out:
        The results folder (see the module's description).
    source:
        The data, per data seed: ``source(seed)`` is ``(training pool, test set)``; picklable
        for ``jobs > 1`` (:func:`setting` gives a data set's).
    factory:
        Builds a fresh model.
    base:
        The protocol settings, every method at its default.
    setup:
        A description of the data and model (saved with the results).
    tune_seeds, report_seeds:
        Disjoint seeds; each draws its own data.
    val_size:
        Examples held out of each tuning seed's training pool.
    jobs:
        Worker processes of each protocol call.
    resume:
        Continue a run in ``out``; without it a folder holding anything is refused.
    progress:
        Show the protocol's progress bars.
    command:
        The command line, for ``provenance.json``.

    Returns
    -------
    dict
        What ``tuning.json`` holds.

    Examples
    --------
    A tiny run (one tuning seed, one report seed) on small features data:

    >>> import tempfile
    >>> from torch_dash_optim.experiments.features import FeatureDraws, FeatureSpec
    >>> spec = FeatureSpec(num_train=120, num_test=40, patches=2, patch_dim=48)
    >>> factory = build_model("patchcnn", (spec.input_length,), spec.classes, width=4, patch_dim=spec.patch_dim)
    >>> base = ProtocolConfig(num_chunks=2, lr=0.05, max_epochs=3)
    >>> result = tune(tempfile.mkdtemp(), FeatureDraws(spec), factory, base, setup={"dataset": "features"},
    ...               tune_seeds=[10], report_seeds=[0], val_size=30)
    >>> sorted(result["chosen"]) == sorted(GRID)
    True
    """
    out = Path(out)
    setup = dict(setup or {})
    tune_seeds, report_seeds = [int(s) for s in tune_seeds], [int(s) for s in report_seeds]
    if set(tune_seeds) & set(report_seeds):
        raise ValueError(
            f"tuning seeds {sorted(set(tune_seeds) & set(report_seeds))} are also report seeds; the result must be "
            "reported on other seeds (and so other data) than the choice was made on"
        )
    if not tune_seeds or not report_seeds:
        raise ValueError("give at least one tuning seed and one report seed")
    if out.exists() and any(out.iterdir()) and not resume:
        raise FileExistsError(
            f"{out} already holds a tuning run; pass --resume to continue it, or choose another --out"
        )
    start = time.perf_counter()
    sizes = {len(v) for v in GRID.values()}
    if len(sizes) != 1:
        raise RuntimeError(f"every tuned method must get the same number of configurations; GRID has {sizes}")
    held_out = HeldOut(source, val_size)
    records_by_config = [
        _run(out / "tune" / f"config-{k}", held_out, grid_config(base, k), list(GRID), tune_seeds,
             {**setup, "phase": "tune", "config": k, "validation": val_size}, factory, jobs, progress)
        for k in range(sizes.pop())
    ]
    chosen, table = choose(records_by_config, base)
    arms = report_arms(chosen, base)
    report: dict[str, list[dict[str, Any]]] = {}
    groups = _groups(arms, base)
    for i, (config, members) in enumerate(groups):
        folder = out / "report" / f"group-{i}"
        records = _run(folder, source, config, [a.method for a in members], report_seeds,
                       {**setup, "phase": "report", "arms": [a.name for a in members]}, factory, jobs, progress)
        for arm in members:
            report[arm.name] = [r for r in records if r["method"] == arm.method]
    result = {
        "dataset": setup.get("dataset"),
        "protocol": base.to_dict(),
        "setup": setup,
        "tune_seeds": tune_seeds,
        "report_seeds": report_seeds,
        "val_size": val_size,
        "grid": {m: [dict(e) for e in entries] for m, entries in GRID.items()},
        "untuned": list(UNTUNED),
        "validation": table,
        "chosen": chosen,
        "arms": [dataclasses.asdict(a) | {"folder": f"report/group-{i}"} for i, (_c, members) in enumerate(groups)
                 for a in members],
    }
    (out / "tuning.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    cpu = sum(float(r.get("cpu_seconds") or 0.0) for recs in records_by_config for r in recs)
    cpu += sum(float(r.get("cpu_seconds") or 0.0) for recs in report.values() for r in recs)
    add_invocation(out, command or f"python -m torch_dash_optim.experiments.tuning --out {out}", jobs, 1,
                   time.perf_counter() - start, cpu)
    (out / "tuning.md").write_text(_summary(result, report), encoding="utf-8")
    return result


def _run(
    folder: Path,
    data: Callable[[int], tuple[Dataset, Dataset]],
    config: ProtocolConfig,
    methods: list[str],
    seeds: list[int],
    setup: dict[str, Any],
    factory: Callable[[], Any],
    jobs: int,
    progress: bool,
) -> list[dict[str, Any]]:
    """One protocol call into ``folder`` (continued if it holds one already)."""
    return run_protocol(data=data, model_factory=factory, config=config, methods=methods, seeds=seeds, out=folder,
                        resume=folder.exists(), setup=setup, jobs=jobs, progress=progress)


def _settings_text(settings: dict[str, Any]) -> str:
    """``λ = 0.3``, ``shrink 0.3, σ 0.01``, ``DASH's mean``: a configuration as the tables write it."""
    names = {"dash_lambd": "λ", "sp_shrink": "shrink", "sp_sigma": "σ", "fire_alpha": "α", "l2_init": "strength",
             "uniform_factor": "factor"}
    if not settings:
        return "none"
    parts = []
    for k, v in settings.items():
        if k == "uniform_factor" and v is None:
            parts.append("DASH's mean factor")
        else:
            parts.append(f"{names.get(k, k)} {v:g}")
    return ", ".join(parts)


def tuned_records(report: dict[str, list[dict[str, Any]]], kind: str) -> list[dict[str, Any]]:
    """The report's records with each method at ``kind`` (``"tuned"``: its choice; ``"default"``), named by method.

    A method whose choice is its default has no ``@tuned`` arm; its ``@default`` records stand
    for it.

    Examples
    --------
    >>> rep = {"dash@default": [{"method": "dash", "seed": 0}], "dash@tuned": [{"method": "dash", "seed": 1}],
    ...        "cold@default": [{"method": "cold", "seed": 0}]}
    >>> [(r["method"], r["seed"]) for r in tuned_records(rep, "tuned")]
    [('cold', 0), ('dash', 1)]
    """
    named = list(dict.fromkeys(name.split("@")[0] for name in report))
    methods = [m for m in BUILTIN if m in named] + [m for m in named if m not in BUILTIN]
    out = []
    for method in methods:
        arm = f"{method}@{kind}" if f"{method}@{kind}" in report else f"{method}@default"
        out += report.get(arm, [])
    return out


def _summary(result: dict[str, Any], report: dict[str, list[dict[str, Any]]]) -> str:
    """``tuning.md``: each configuration's validation accuracy, the choices, DASH tuned against the others tuned."""
    lines = [f"# Every method tuned on one budget ({result['dataset']})", "",
             f"Chosen on validation sets of {result['val_size']} examples held out of the training pool of tuning "
             f"seeds {_seeds_text(result['tune_seeds'])}; reported on seeds {_seeds_text(result['report_seeds'])}.",
             "", "| Method | Configuration | Validation acc (%) | Steps | |", "|---|---|---|---|---|"]
    for method, rows in result["validation"].items():
        for row in rows:
            mark = "chosen" if row["settings"] == result["chosen"][method] else ""
            mark += " (default)" if row["default"] else ""
            mark += f" capped in {row['capped']} experiments" if row.get("capped") else ""
            lines.append(f"| {method} | {_settings_text(row['settings'])} | {100 * row['val_acc']:.2f} | "
                         f"{row['steps']:.0f} | {mark.strip()} |")
    for kind in ("tuned", "default"):
        records = tuned_records(report, kind)
        lines += ["", f"DASH against each method, every one {kind}, on the report seeds:", ""]
        lines += [f"- {line}" for line in verdict_lines(compare(records, "dash"))]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """The command: tune every method, report, write ``--out`` (see the module's description).

    Examples
    --------
    >>> from torch_dash_optim.experiments.tuning import main
    >>> main(["--help"])  # the run takes about 45 minutes of CPU time on the features data
    Traceback (most recent call last):
    ...
    SystemExit: 0
    """
    p = argparse.ArgumentParser(prog="python -m torch_dash_optim.experiments.tuning",
                                description="Tune every warm-starting method on one budget, then report.")
    p.add_argument("--out", type=Path, required=True, help="results folder")
    p.add_argument("--dataset", default="features", choices=("features", "mnist1d", "mnist"))
    p.add_argument("--data-dir", help="the folder of mnist's IDX files")
    p.add_argument("--tune-seeds", default=_seeds_text(TUNE_SEEDS), help="seeds the choice is made on (0,1 or 0-4)")
    p.add_argument("--report-seeds", default=_seeds_text(DEFAULT_SEEDS), help="seeds the result is reported on")
    p.add_argument("--val-size", type=int, default=400, help="validation examples held out per tuning seed")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    try:
        tune_seeds, report_seeds = parse_seeds(args.tune_seeds), parse_seeds(args.report_seeds)
    except ValueError:
        p.error(f"--tune-seeds and --report-seeds take seeds such as 0,1,2 or 0-4; got {args.tune_seeds!r} and "
                f"{args.report_seeds!r}")
    if args.jobs < 1:
        p.error(f"--jobs {args.jobs} must be >= 1")
    command = "python -m torch_dash_optim.experiments.tuning " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        parts = setting(args.dataset, args.data_dir)
        tune(args.out, parts["source"], parts["factory"], parts["base"], setup=parts["setup"], tune_seeds=tune_seeds,
             report_seeds=report_seeds, val_size=args.val_size, jobs=args.jobs, resume=args.resume,
             progress=not args.no_progress, command=command)
    except (ValueError, FileExistsError, FileNotFoundError) as err:
        p.error(str(err))
    except KeyboardInterrupt:
        print(f"\ninterrupted; what finished is kept in {args.out}; continue with the same command plus --resume",
              file=sys.stderr)
        return 130
    print((args.out / "tuning.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
