"""Does DASH shrink the units that memorized noise and keep those that learned features, and when?

On the ``features`` data set (:mod:`~torch_dash_optim.experiments.features`) we know, for
every training input, which patch holds its class feature and which patches hold noise. The
first conv layer of :class:`~torch_dash_optim.experiments.models.PatchCNN` reads one patch per
kernel, and each of its kernels is one DASH unit. So, at each stage (each new chunk, just before
DASH shrinks), we can ask what each unit carries and what factor DASH gives it:

* ``feature energy`` of unit ``c``: the mean of ``<w_c, x_i[p_i]>**2`` over the inputs seen so
  far, ``p_i`` being input ``i``'s feature patch (``rare energy``: the same over the inputs
  that carry a rare feature); ``noise energy``: the same over their noise patches, the very
  noise the network was trained on and could memorize; its ``feature share``: feature energy /
  (feature energy + noise energy). For a unit of the second conv (one output channel's
  weights on one input channel) the same measures of its input channel after BatchNorm and ReLU;
* Spearman's rank correlation between the factors and the feature share (and the rare
  energy), and the mean factor of the half of the units with the larger feature share minus
  that of the other half (``factor_gap``);
* ``median_abs_cos``: the median over the layer's units of ``|cos(w, G)|``, ``G`` being DASH's
  direction (the averaged negative gradient of its pass); DASH's factor is that cosine clamped
  to ``[lambd, 1]``, so units with ``|cos| < lambd`` all sit at the floor;
* for the first conv, where the feature subspace (spanned by the ``classes * (1 + rare)``
  features, in every patch) is known: ``grad_feature_share``, the share of the energy of ``G``
  in that subspace (a direction drawn at random would have ``num_features / patch_dim``);
  ``best_feature_cos``, the median over kernels of the largest cosine that any kernel lying in
  the feature subspace could have with its ``G`` (the square root of that kernel's share), so
  that a value below ``lambd`` means that even a perfectly feature-tuned kernel sits at the
  floor; and ``weight_feature_share``, the share of the kernels' own energy in the subspace.

The paper's account predicts a positive correlation and a positive gap. Whether the direction
matters for accuracy is DASH against its controls (``shuffled``: DASH's factors permuted within
each tensor; ``uniform_matched``: each tensor shrunk alike by DASH's mean factor for it), run
beside it on the same seeds.

:func:`sweep` does this at several noise levels (``FeatureSpec.noise_std``): for every level and
seed, one :func:`~torch_dash_optim.experiments.run_protocol` run of DASH, measured at every
stage by :class:`TracedDash` (which is DASH itself, plus the measurement; its runs are DASH's
runs), beside the other methods. Run it with ``python -m torch_dash_optim.experiments.mechanism
--out DIR --noise 0.5,1.0,1.5``: it writes ``DIR/mechanism.csv`` (one row per level, seed,
stage and layer), ``DIR/noise-<level>/experiments.json`` (the protocol's records of every
method at that level) and ``DIR/provenance.json``, and prints a per-level summary.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..gather import gather_direction
from .config import DATASET_PRESETS, DEFAULT_SEEDS, MODEL_WIDTHS, ProtocolConfig, parse_seeds
from .features import FeatureDraws, FeaturesData, FeatureSpec
from .methods import Arrival, Dash, Learner
from .models import PatchCNN
from .protocol import run_protocol
from .provenance import add_invocation
from .stats import compare, verdict_lines
from .store import write_tables
from .workers import run_in_workers

__all__ = [
    "MECHANISM_FIELDS",
    "SWEEP_METHODS",
    "TracedDash",
    "main",
    "spearman",
    "stage_measures",
    "sweep",
    "trace_dash",
]

#: The columns of ``mechanism.csv``, one row per noise level, seed, stage and layer. The last
#: three are measured on the first conv only (empty for the second).
MECHANISM_FIELDS: tuple[str, ...] = (
    "noise_std",
    "seed",
    "experiment",
    "layer",
    "units",
    "mean_factor",
    "at_floor",
    "rho_feature_share",
    "rho_rare_energy",
    "factor_feature_half",
    "factor_noise_half",
    "factor_gap",
    "feature_share_mean",
    "median_abs_cos",
    "stage_mean_factor",
    "test_acc",
    "grad_feature_share",
    "best_feature_cos",
    "weight_feature_share",
)

#: The methods run beside the measured DASH at every noise level, by default the warm start
#: (what DASH improves on) and the controls of DASH's direction (``--methods`` names others).
SWEEP_METHODS: tuple[str, ...] = ("warm", "uniform_matched", "shuffled")


def _ranks(x: Tensor) -> Tensor:
    """Average ranks (ties share the mean of their ranks)."""
    order = torch.argsort(x, stable=True)
    ranks = torch.empty_like(x, dtype=torch.float64)
    ranks[order] = torch.arange(len(x), dtype=torch.float64)
    values, inverse = torch.unique(x, return_inverse=True)
    if len(values) < len(x):  # average the ranks of tied values
        sums = torch.zeros(len(values), dtype=torch.float64).index_add_(0, inverse, ranks)
        counts = torch.zeros(len(values), dtype=torch.float64).index_add_(0, inverse, torch.ones_like(ranks))
        ranks = (sums / counts)[inverse]
    return ranks


def spearman(x: Tensor, y: Tensor) -> float:
    """Return Spearman's rank correlation of two 1-D tensors (NaN if either is constant).

    Examples
    --------
    >>> spearman(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 30.0, 20.0]))
    0.5
    >>> spearman(torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0]))
    nan
    """
    rx, ry = _ranks(x.flatten().double()), _ranks(y.flatten().double())
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = float(rx.norm() * ry.norm())
    return float("nan") if denom == 0 else round(float(rx @ ry) / denom, 12)


def stage_measures(acts: Tensor, feature_patch: Tensor, rare: Tensor) -> dict[str, Tensor]:
    """Per channel: feature energy, rare-feature energy, noise energy and feature share.

    Parameters
    ----------
    acts:
        ``(N, channels, patches)``: a layer's response, one value per patch (the first conv
        of :class:`~torch_dash_optim.experiments.models.PatchCNN` reads one patch per position).
    feature_patch:
        ``(N,)``: the patch of each input that holds its feature.
    rare:
        ``(N,)``: whether each input's feature is a rare one.

    Returns
    -------
    dict of str to Tensor
        ``feature`` (mean squared response on the feature patch), ``rare`` (the same over the
        inputs with a rare feature), ``noise`` (mean squared response on the noise patches)
        and ``share`` (``feature / (feature + noise)``), each of shape ``(channels,)``.

    Examples
    --------
    >>> acts = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])  # channel 0 fires on patch 0, channel 1 on patch 1
    >>> m = stage_measures(acts, torch.tensor([0]), torch.tensor([False]))
    >>> m["share"].tolist()
    [1.0, 0.0]
    """
    n = acts.shape[0]
    resp = acts.double().transpose(1, 2) ** 2  # (N, patches, channels)
    is_feature = torch.zeros(resp.shape[:2], dtype=torch.bool)
    is_feature[torch.arange(n), feature_patch] = True
    feature = resp[is_feature].mean(0)
    noise = resp[~is_feature].mean(0)
    rare_energy = resp[is_feature][rare].mean(0) if bool(rare.any()) else torch.zeros_like(feature)
    share = feature / (feature + noise).clamp_min(1e-30)
    return {"feature": feature, "rare": rare_energy, "noise": noise, "share": share}


def subspace_measures(weight: Tensor, direction: Tensor, basis: Tensor) -> dict[str, float]:
    """How a layer's kernels and DASH's direction sit against a subspace (the features') of their input.

    Parameters
    ----------
    weight, direction:
        ``(units, dim)``: one kernel per row, and DASH's direction for it.
    basis:
        ``(k, dim)``: orthonormal rows spanning the subspace.

    Returns
    -------
    dict of str to float
        ``grad_feature_share``: the share of the direction's energy (summed over units) in the
        subspace; ``best_feature_cos``: the median over units of ``|P g| / |g|``, the largest
        cosine a kernel in the subspace could have with that unit's direction;
        ``weight_feature_share``: the share of the kernels' energy in the subspace;
        ``median_abs_cos``: the median of ``|cos(w, g)|`` over units.

    Examples
    --------
    >>> basis = torch.eye(4)[:1]                      # the subspace: the first coordinate
    >>> w = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    >>> g = torch.tensor([[3.0, 4.0, 0, 0], [0, 0, 1.0, 0]])
    >>> m = subspace_measures(w, g, basis)
    >>> round(m["grad_feature_share"], 3), round(m["weight_feature_share"], 3), round(m["median_abs_cos"], 3)
    (0.346, 0.5, 0.3)
    >>> round(m["best_feature_cos"], 3)  # unit 0 could reach 3/5 with a kernel in the subspace, unit 1 nothing
    0.3
    """
    w, g, basis = weight.double(), direction.double(), basis.double()
    pg, pw = g @ basis.T, w @ basis.T
    g_energy, w_energy = (g * g).sum(1), (w * w).sum(1)
    share = (pg * pg).sum(1) / g_energy.clamp_min(1e-300)
    cos = (w * g).sum(1) / (w_energy.sqrt() * g_energy.sqrt()).clamp_min(1e-300)
    return {
        "grad_feature_share": float((pg * pg).sum() / g_energy.sum().clamp_min(1e-300)),
        "best_feature_cos": float(torch.quantile(share.sqrt(), 0.5)),
        "weight_feature_share": float((pw * pw).sum() / w_energy.sum().clamp_min(1e-300)),
        "median_abs_cos": float(torch.quantile(cos.abs(), 0.5)),
    }


def _unit_cos(weight: Tensor, direction: Tensor) -> Tensor:
    """``|cos(w, g)|`` per unit of a conv weight ``(out, in, k)``: one unit per (out, in) slice."""
    w, g = weight.double().flatten(0, 1), direction.double().flatten(0, 1)
    return ((w * g).sum(1) / (w.norm(dim=1) * g.norm(dim=1)).clamp_min(1e-300)).abs()


def _half_gap(factors: Tensor, share: Tensor) -> tuple[float, float]:
    order = torch.argsort(share, descending=True)
    half = len(share) // 2
    return float(factors[order[:half]].mean()), float(factors[order[half:]].mean())


def _carried(x: Tensor, data: FeaturesData) -> tuple[Tensor, Tensor]:
    """Per input, the patch that holds its feature and whether that feature is rare, read off the input itself.

    Noise lies in the space orthogonal to every feature, so the feature patch is the one with
    energy in the feature subspace, and its feature the one it lines up with.
    """
    spec = data.spec
    patches = x.double().reshape(len(x), spec.patches, spec.patch_dim)
    proj = patches @ data.features.double().T  # (N, patches, features)
    patch = proj.pow(2).sum(-1).argmax(1)
    feature = proj[torch.arange(len(x)), patch].abs().argmax(1)
    return patch, data.is_rare(feature)


class TracedDash(Dash):
    """DASH, measured at every stage just before it shrinks (see the module's description).

    The measurement changes nothing: a run of this method is a run of ``dash``, record for
    record. Run it with ``jobs=1`` (its rows stay in this process): the rows of every stage are
    appended to its list ``rows``, one per layer, each with the stage's ``experiment``.

    Parameters
    ----------
    data:
        The draw the run trains on (its feature vectors, and its sizes).
    noise_std:
        Written in every row.
    seed:
        Written in every row.

    Examples
    --------
    >>> from torch_dash_optim.experiments import run_protocol
    >>> from torch_dash_optim.experiments.features import make_features
    >>> from torch_dash_optim.experiments.models import build_model
    >>> spec = FeatureSpec(num_train=90, num_test=30, patches=3, patch_dim=48)
    >>> data = make_features(spec)
    >>> factory = build_model("patchcnn", (spec.input_length,), spec.classes, width=4, patch_dim=spec.patch_dim)
    >>> traced = TracedDash(data, spec.noise_std, seed=0)
    >>> config = ProtocolConfig(num_chunks=3, lr=0.05, max_epochs=3)
    >>> records = run_protocol(data.train, data.test, factory, config=config, methods=[traced], seeds=[0])
    >>> sorted({(row["experiment"], row["layer"]) for row in traced.rows})  # each stage where DASH shrinks, per conv
    [(2, 'conv1'), (2, 'conv2'), (3, 'conv1'), (3, 'conv2')]
    """

    name, label = "dash_traced", "DASH (measured)"

    def __init__(self, data: FeaturesData, noise_std: float = math.nan, seed: int = -1) -> None:
        self.data, self.noise_std, self.seed = data, noise_std, seed
        self.rows: list[dict[str, Any]] = []
        self._stage = 1

    def new_learner(self, model: nn.Module, optimizer: str, config: ProtocolConfig) -> Learner:
        self._stage = 1
        return super().new_learner(model, optimizer, config)

    def on_new_data(self, learner: Learner, arrival: Arrival) -> Learner:
        self._stage += 1
        model = learner.model
        if not isinstance(model, PatchCNN):
            raise TypeError(f"TracedDash measures a PatchCNN, not {type(model).__name__}")
        batches = list(arrival.seen_so_far())
        x = torch.cat([b[0] for b in batches]).cpu()
        feature_patch, rare = _carried(x, self.data)
        pre, post = _activations(model, x.to(next(model.parameters()).device))
        m1 = stage_measures(pre.cpu(), feature_patch, rare)
        m2 = stage_measures(post.cpu(), feature_patch, rare)
        loss = nn.CrossEntropyLoss()
        directions = gather_direction(
            [model.conv1.weight, model.conv2.weight],
            batches,
            lambda b: loss(model(b[0]), b[1]),
            alpha=arrival.config.dash_alpha,
            model=model,
        ).directions
        width = model.conv1.weight.shape[0]
        sub = subspace_measures(
            model.conv1.weight.detach().reshape(width, -1).cpu(),
            directions[0].reshape(width, -1).cpu(),
            self.data.features,
        )
        cos2 = _unit_cos(model.conv2.weight.detach().cpu(), directions[1].cpu())
        factors = self.shrink(learner, arrival).factors
        f1 = factors["conv1.weight"].detach().flatten().double().cpu()
        # conv2's units are (out, in) kernel slices; what a slice reads is its input channel
        f2 = factors["conv2.weight"].detach().reshape(width, width).double().cpu()
        share2, rare2 = m2["share"].expand(width, width), m2["rare"].expand(width, width)
        lambd = arrival.config.dash_lambd
        conv2_cos = {"median_abs_cos": float(torch.quantile(cos2, 0.5))}
        for layer, fs, share, rare_e, extra in (
            ("conv1", f1, m1["share"], m1["rare"], sub),
            ("conv2", f2.flatten(), share2.flatten(), rare2.flatten(), conv2_cos),
        ):
            hi, lo = _half_gap(fs, share)
            row: dict[str, Any] = dict.fromkeys(MECHANISM_FIELDS)
            row |= {
                "noise_std": self.noise_std,
                "seed": self.seed,
                "experiment": self._stage,
                "layer": layer,
                "units": int(fs.numel()),
                "mean_factor": round(float(fs.mean()), 6),
                "at_floor": round(float((fs <= lambd + 1e-6).double().mean()), 6),
                "rho_feature_share": round(spearman(fs, share), 6),
                "rho_rare_energy": round(spearman(fs, rare_e), 6),
                "factor_feature_half": round(hi, 6),
                "factor_noise_half": round(lo, 6),
                "factor_gap": round(hi - lo, 6),
                "feature_share_mean": round(float(share.mean()), 6),
                "stage_mean_factor": round(float(learner.info["dash_mean_factor"]), 6),
                "test_acc": None,
                **{k: round(v, 6) for k, v in extra.items()},
            }
            self.rows.append(row)
        return learner


def _activations(model: PatchCNN, inputs: Tensor) -> tuple[Tensor, Tensor]:
    """The first conv's raw response and its output after BatchNorm (eval mode) and ReLU."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        pre = model.conv1(inputs.unsqueeze(1))
        post = torch.relu(model.bn1(pre))
    model.train(was_training)
    return pre, post


def _level_name(noise_std: float) -> str:
    """The folder of one noise level: ``noise-1.0``."""
    return f"noise-{noise_std:g}" if noise_std != int(noise_std) else f"noise-{noise_std:.1f}"


@dataclasses.dataclass(frozen=True)
class _Unit:
    """One noise level and seed: DASH, measured, beside the other methods (what a worker runs)."""

    spec: FeatureSpec
    seed: int
    config: ProtocolConfig
    width: int
    methods: tuple[str, ...]


def _run_unit(unit: _Unit) -> dict[str, Any]:
    """Run one unit in this process; its protocol records (the measured DASH named ``dash``) and measurement rows."""
    from .models import build_model

    draws = FeatureDraws(unit.spec)
    data = draws.data(unit.seed)
    spec = data.spec
    traced = TracedDash(data, spec.noise_std, unit.seed)
    factory = build_model("patchcnn", (spec.input_length,), spec.classes, width=unit.width, patch_dim=spec.patch_dim)
    records = run_protocol(
        data=draws, model_factory=factory, config=unit.config, methods=[*unit.methods, traced], seeds=[unit.seed],
        progress=False,
    )
    for r in records:
        if r["method"] == traced.name:
            r["method"] = "dash"
    accuracy = {r["experiment"]: r["test_acc"] for r in records if r["method"] == "dash"}
    for row in traced.rows:
        row["test_acc"] = round(accuracy[row["experiment"]], 6)
    return {"noise_std": spec.noise_std, "seed": unit.seed, "records": records, "rows": traced.rows}


def _default_config() -> ProtocolConfig:
    """The protocol settings of the default ``features`` run."""
    preset = DATASET_PRESETS["features"]
    return ProtocolConfig(
        num_chunks=preset["chunks"], lr=preset["lr"], max_epochs=preset["max_epochs"], l2_init=preset["l2_init"]
    )


def sweep(
    out: str | Path,
    noise_levels: Sequence[float] = (FeatureSpec().noise_std,),
    seeds: Sequence[int] = DEFAULT_SEEDS,
    *,
    methods: Sequence[str] = SWEEP_METHODS,
    config: ProtocolConfig | None = None,
    spec: FeatureSpec | None = None,
    width: int = MODEL_WIDTHS["patchcnn"],
    jobs: int = 1,
    resume: bool = False,
    command: str = "",
) -> list[dict[str, Any]]:
    """Measure DASH at every stage and run it beside ``methods``, at each noise level and seed.

    Each seed draws its own data (data seed = seed) with ``spec``'s settings and the level's
    ``noise_std``; everything else is the default ``features`` run's.

    Parameters
    ----------
    out:
        The results folder: ``mechanism.csv``, ``noise-<level>/experiments.json`` per level,
        ``sweep.json`` (the settings), ``units.jsonl`` (each finished level and seed, for
        ``resume``) and ``provenance.json``.
    noise_levels:
        Values of ``FeatureSpec.noise_std`` (the feature's norm stays ``feature_strength``).
    seeds:
        Protocol seeds, each with its own data draw.
    methods:
        Built-in methods run beside DASH (names).
    config, spec, width:
        The protocol settings, the data settings (``noise_std`` and ``seed`` are replaced) and
        the ``patchcnn``'s width.
    jobs:
        Worker processes, one (level, seed) each.
    resume:
        Continue a sweep in ``out`` with the same settings; without it, a folder that holds one
        is refused.
    command:
        The command line, for ``provenance.json``.

    Returns
    -------
    list of dict
        The measurement rows (:data:`MECHANISM_FIELDS`).

    Examples
    --------
    >>> import tempfile
    >>> spec = FeatureSpec(num_train=60, num_test=20, patches=2, patch_dim=48)
    >>> rows = sweep(tempfile.mkdtemp(), [0.5, 2.0], [0], methods=["shuffled"], spec=spec, width=4,
    ...              config=ProtocolConfig(num_chunks=2, lr=0.05, max_epochs=2))
    >>> sorted({row["noise_std"] for row in rows})
    [0.5, 2.0]
    """
    out = Path(out)
    config = config or _default_config()
    spec = spec or FeatureSpec()
    levels = [float(v) for v in noise_levels]
    if not levels or any(not math.isfinite(v) or v < 0 for v in levels) or len(set(levels)) != len(levels):
        raise ValueError(f"noise levels {list(noise_levels)!r} must be distinct numbers >= 0, such as 0.5,1.0,1.5")
    seeds = [int(s) for s in seeds]
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds {seeds!r} must be distinct integers >= 0")
    settings = {
        "noise_levels": levels,
        "seeds": seeds,
        "methods": ["dash", *methods],
        "protocol": config.to_dict(),
        "features": {k: v for k, v in dataclasses.asdict(spec).items() if k not in ("noise_std", "seed")},
        "model": "patchcnn",
        "width": width,
    }
    saved_path, units_path = out / "sweep.json", out / "units.jsonl"
    finished: dict[tuple[float, int], dict[str, Any]] = {}
    if saved_path.exists() or units_path.exists():
        if not resume:
            raise FileExistsError(f"{out} already holds a sweep; pass --resume to continue it, or choose another --out")
        saved = json.loads(saved_path.read_text(encoding="utf-8")) if saved_path.exists() else settings
        if saved != settings:
            raise ValueError(f"cannot resume {out}: it was run with other settings ({saved}); use the same ones")
        if units_path.exists():
            for line in units_path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    unit = json.loads(line)
                    finished[(float(unit["noise_std"]), int(unit["seed"]))] = unit
    out.mkdir(parents=True, exist_ok=True)
    saved_path.write_text(json.dumps(settings, indent=1) + "\n", encoding="utf-8")
    pending = [
        _Unit(dataclasses.replace(spec, noise_std=level), seed, config, width, tuple(methods))
        for level in levels
        for seed in seeds
        if (level, seed) not in finished
    ]
    start = time.perf_counter()

    def done(unit: _Unit, result: dict[str, Any]) -> None:
        finished[(unit.spec.noise_std, unit.seed)] = result
        with units_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(result) + "\n")
        print(f"noise {unit.spec.noise_std:g}, seed {unit.seed}: done", file=sys.stderr, flush=True)

    run_in_workers(_run_unit, pending, done, jobs=jobs)
    rows = [row for key in sorted(finished) for row in finished[key]["rows"]]
    with open(out / "mechanism.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=MECHANISM_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    cpu = 0.0
    for level in levels:
        records = [r for seed in seeds for r in finished[(level, seed)]["records"]]
        cpu += sum(float(r.get("cpu_seconds") or 0.0) for r in records)
        setup = {"dataset": "features", "model": "patchcnn", "width": width,
                 "features": {**settings["features"], "noise_std": level}}
        folder = out / _level_name(level)
        folder.mkdir(exist_ok=True)
        write_tables(folder, records, {"protocol": config.to_dict(), "setup": setup})
    add_invocation(out, command or f"python -m torch_dash_optim.experiments.mechanism --out {out}", jobs, 1,
                   time.perf_counter() - start, cpu)
    text = summary(rows, {level: [r for s in seeds for r in finished[(level, s)]["records"]] for level in levels})
    (out / "mechanism.md").write_text(f"# DASH's factors and direction against the noise level\n\n{text}\n",
                                      encoding="utf-8")
    return rows


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    values = [float(r[key]) for r in rows if r.get(key) not in (None, "") and float(r[key]) == float(r[key])]
    return statistics.fmean(values) if values else math.nan


def summary(rows: list[dict[str, Any]], records: dict[float, list[dict[str, Any]]]) -> str:
    """Per noise level: the first conv's measures (means over seeds and stages) and DASH's verdicts.

    Parameters
    ----------
    rows:
        The measurement rows of :func:`sweep`.
    records:
        Per noise level, the protocol records of every method.

    Returns
    -------
    str
        Markdown: a table and the verdict lines of each level.
    """
    lines = [
        "| noise std | conv1: at floor | median cos | gradient share in feature subspace | best feature cos "
        "| ρ(factor, feature share) | conv2: ρ | DASH test acc |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for level in sorted(records):
        c1 = [r for r in rows if float(r["noise_std"]) == level and r["layer"] == "conv1"]
        c2 = [r for r in rows if float(r["noise_std"]) == level and r["layer"] == "conv2"]
        last = [r["test_acc"] for r in records[level] if r["method"] == "dash"
                and r["experiment"] == max(x["experiment"] for x in records[level])]
        lines.append(
            f"| {level:g} | {100 * _mean(c1, 'at_floor'):.0f}% | {_mean(c1, 'median_abs_cos'):.3f} | "
            f"{100 * _mean(c1, 'grad_feature_share'):.1f}% | {_mean(c1, 'best_feature_cos'):.3f} | "
            f"{_mean(c1, 'rho_feature_share'):+.3f} | {_mean(c2, 'rho_feature_share'):+.3f} | "
            f"{100 * statistics.fmean(last):.2f}% |"
        )
    for level in sorted(records):
        config = records[level]
        lines += ["", f"Noise {level:g}, DASH against each method:", ""]
        lines += [f"- {line}" for line in verdict_lines(compare(config, "dash"))]
    return "\n".join(lines)


def trace_dash(data: FeaturesData, config: ProtocolConfig, seed: int, width: int = 64) -> list[dict[str, Any]]:
    """Run DASH on one draw of ``features`` for one seed (the protocol's run) and measure every stage.

    Parameters
    ----------
    data:
        The draw of the ``features`` data set the run trains on.
    config:
        The protocol's settings (chunks, learning rate, threshold, DASH's λ and α, ...).
    seed:
        The protocol seed (chunk split, initial model, batch orders).
    width:
        Channels of the :class:`~torch_dash_optim.experiments.models.PatchCNN`.

    Returns
    -------
    list of dict
        Two rows (``conv1``, ``conv2``) per stage from the second chunk on, with the keys of
        :data:`MECHANISM_FIELDS` (``test_acc`` is that of the experiment the stage starts).

    Examples
    --------
    >>> spec = FeatureSpec(num_train=60, num_test=20, patches=2, patch_dim=48)
    >>> from torch_dash_optim.experiments.features import make_features
    >>> rows = trace_dash(make_features(spec), ProtocolConfig(num_chunks=2, lr=0.05, max_epochs=2), 0, width=4)
    >>> [(r["experiment"], r["layer"], r["units"]) for r in rows]
    [(2, 'conv1', 4), (2, 'conv2', 16)]
    """
    from .models import build_model

    spec = data.spec
    traced = TracedDash(data, spec.noise_std, seed)
    factory = build_model("patchcnn", (spec.input_length,), spec.classes, width=width, patch_dim=spec.patch_dim)
    records = run_protocol(data.train, data.test, factory, config=config, methods=[traced], seeds=[seed],
                           progress=False)
    accuracy = {r["experiment"]: r["test_acc"] for r in records}
    for row in traced.rows:
        row["test_acc"] = round(accuracy[row["experiment"]], 6)
    return traced.rows


def _floats(text: str) -> list[float]:
    return [float(t) for t in text.split(",") if t.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    """The command: measure DASH and run it beside its controls at each noise level; write ``--out``.

    Parameters
    ----------
    argv:
        ``--out DIR`` (required), ``--noise 0.5,1.0,1.5`` (default: the default run's 1.0),
        ``--seeds 0,1,...`` (default: the default run's seeds), ``--methods`` (default:
        :data:`SWEEP_METHODS`), ``--jobs N`` and ``--resume``.

    Returns
    -------
    int
        0.

    Examples
    --------
    >>> from torch_dash_optim.experiments.mechanism import main
    >>> main(["--help"])  # a level of 5 seeds takes about 3 minutes of CPU time
    Traceback (most recent call last):
    ...
    SystemExit: 0
    """
    p = argparse.ArgumentParser(prog="python -m torch_dash_optim.experiments.mechanism")
    p.add_argument("--out", type=Path, required=True, help="results folder")
    p.add_argument("--noise", default=f"{FeatureSpec().noise_std:g}",
                   help="comma-separated noise std levels of the features data (default: the default run's)")
    p.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)), help="seeds, such as 0,1,2 or 0-7")
    p.add_argument("--methods", default=",".join(SWEEP_METHODS), help="methods run beside DASH, comma-separated")
    p.add_argument("--jobs", type=int, default=1, help="worker processes, one (level, seed) each (default 1)")
    p.add_argument("--resume", action="store_true", help="continue a sweep in --out")
    args = p.parse_args(argv)
    try:
        levels = _floats(args.noise)
        seeds = parse_seeds(args.seeds)
    except ValueError:
        p.error(f"--noise takes comma-separated numbers such as 0.5,1.0 and --seeds seeds such as 0,1,2 or 0-7; "
                f"got {args.noise!r} and {args.seeds!r}")
    from .methods import BUILTIN

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in BUILTIN or m == "dash"]
    if bad:
        p.error(f"--methods: unknown or DASH itself: {', '.join(bad)}; use some of "
                f"{', '.join(m for m in BUILTIN if m != 'dash')}")
    if args.jobs < 1:
        p.error(f"--jobs {args.jobs} must be >= 1")
    torch.set_num_threads(1)
    command = "python -m torch_dash_optim.experiments.mechanism " + " ".join(
        sys.argv[1:] if argv is None else list(argv))
    try:
        rows = sweep(args.out, levels, seeds, methods=methods, width=MODEL_WIDTHS["patchcnn"], jobs=args.jobs,
                     resume=args.resume, command=command)
    except (ValueError, FileExistsError) as err:
        p.error(str(err))
    except KeyboardInterrupt:
        print(f"\ninterrupted; finished units are kept in {args.out}; continue with the same command plus --resume",
              file=sys.stderr)
        return 130
    print((args.out / "mechanism.md").read_text(encoding="utf-8"))
    del rows
    return 0


if __name__ == "__main__":
    sys.exit(main())
