"""Does DASH shrink the units that memorized noise and keep those that learned features?

On the ``features`` data set (:mod:`~torch_dash_optim.experiments.features`) we know, for
every training input, which patch holds its class feature and which patches hold noise. The
first conv layer of :class:`~torch_dash_optim.experiments.models.PatchCNN` reads one patch per
kernel, and each of its kernels is one DASH unit. So, at each stage (each new chunk), we can
ask what each unit carries and what factor DASH gives it:

* ``feature energy`` of unit ``c``: the mean of ``<w_c, x_i[p_i]>**2`` over the inputs seen so
  far, ``p_i`` being input ``i``'s feature patch (``rare energy``: the same over the inputs
  that carry a rare feature);
* ``noise energy``: the mean of ``<w_c, x_i[p]>**2`` over their noise patches ``p``, i.e. the
  very noise the network was trained on and could memorize;
* its ``feature share``: feature energy / (feature energy + noise energy).

Per stage we report Spearman's rank correlation between the factors and the feature share
(and the rare energy), and the mean factor of the half of the units with the larger feature
share against that of the other half. The paper's account predicts a positive correlation
and a positive gap. The ``uniform`` ablation gives every unit the same factor (DASH's mean),
so its correlation and gap are zero by construction; whether direction matters for accuracy
is the ``DASH - uniform`` verdict of the main run.

The analysis replays DASH's run of the protocol for each seed (same chunks, same seeding as
:func:`~torch_dash_optim.experiments.run_protocol`, one process), measuring each stage just
before DASH shrinks. Run it with ``python -m torch_dash_optim.experiments.mechanism --out DIR``;
it writes ``DIR/mechanism.csv`` and prints a per-stage summary.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import ConcatDataset

from ..wrapper import DASHWrapper
from .config import DATASET_PRESETS, DEFAULT_SEEDS, MODEL_WIDTHS, ProtocolConfig
from .features import FeaturesData, FeatureSpec, make_features
from .loaders import make_loader, split_chunks
from .models import PatchCNN
from .training import evaluate, make_optimizer, train_to_threshold

__all__ = ["MECHANISM_FIELDS", "main", "spearman", "stage_measures", "trace_dash"]

#: The columns of ``mechanism.csv``, one row per seed and stage.
MECHANISM_FIELDS: tuple[str, ...] = (
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
    "stage_mean_factor",
    "test_acc",
)


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


@torch.no_grad()
def _activations(model: PatchCNN, inputs: Tensor) -> tuple[Tensor, Tensor]:
    """The first conv's raw response and its output after BatchNorm (eval mode) and ReLU."""
    was_training = model.training
    model.eval()
    pre = model.conv1(inputs.unsqueeze(1))
    post = torch.relu(model.bn1(pre))
    model.train(was_training)
    return pre, post


def _half_gap(factors: Tensor, share: Tensor) -> tuple[float, float]:
    order = torch.argsort(share, descending=True)
    half = len(share) // 2
    return float(factors[order[:half]].mean()), float(factors[order[half:]].mean())


def _experiment_seed(seed: int, experiment: int) -> int:
    # the protocol's per-experiment seed (protocol._experiment_seed), so the replay matches its runs
    return int(seed) * 1_000_003 + experiment + 1


def trace_dash(
    data: FeaturesData, config: ProtocolConfig, seed: int, width: int = 64
) -> list[dict[str, Any]]:
    """Replay DASH's run of the protocol on ``data`` for one seed and measure every stage.

    Parameters
    ----------
    data:
        The ``features`` data set, with its per-sample feature patches.
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
    >>> rows = trace_dash(make_features(spec), ProtocolConfig(num_chunks=2, lr=0.05, max_epochs=2), 0, width=4)
    >>> [(r["experiment"], r["layer"], r["units"]) for r in rows]
    [(2, 'conv1', 4), (2, 'conv2', 16)]
    """
    spec = data.spec
    chunks = split_chunks(data.train, config.num_chunks, torch.Generator().manual_seed(seed))
    x_all = data.train.tensors[0]
    rare_all = data.is_rare(data.train_feature)
    torch.manual_seed(seed)
    model = PatchCNN(spec.input_length, spec.classes, patch_dim=spec.patch_dim, width=width)
    optimizer = DASHWrapper(
        make_optimizer(model, "sgd", config),
        model=model,
        loss_fn=nn.CrossEntropyLoss(),
        lambd=config.dash_lambd,
        alpha=config.dash_alpha,
    )
    test_loader = make_loader(data.test, config.test_batch_size)
    rows: list[dict[str, Any]] = []
    for j in range(config.num_chunks):
        torch.manual_seed(_experiment_seed(seed, j))
        seen = ConcatDataset(chunks[: j + 1])
        if j > 0:
            index = torch.tensor([i for c in chunks[: j + 1] for i in c.indices])
            pre, post = _activations(model, x_all[index])
            feature_patch, rare = data.train_patch[index], rare_all[index]
            m1 = stage_measures(pre, feature_patch, rare)
            m2 = stage_measures(post, feature_patch, rare)
            report = optimizer.on_new_data(make_loader(seen, len(chunks[0])))
            f1 = report.factors["conv1.weight"].detach().flatten().double()
            # conv2's units are (out, in) kernel slices; what a slice reads is its input channel
            f2 = report.factors["conv2.weight"].detach().reshape(width, width).double()
            share2 = m2["share"].expand(width, width)
            rare2 = m2["rare"].expand(width, width)
            for layer, factors, share, rare_e in (
                ("conv1", f1, m1["share"], m1["rare"]),
                ("conv2", f2.flatten(), share2.flatten(), rare2.flatten()),
            ):
                hi, lo = _half_gap(factors, share)
                rows.append(
                    {
                        "seed": seed,
                        "experiment": j + 1,
                        "layer": layer,
                        "units": int(factors.numel()),
                        "mean_factor": round(float(factors.mean()), 6),
                        "at_floor": round(float((factors <= config.dash_lambd + 1e-6).double().mean()), 6),
                        "rho_feature_share": round(spearman(factors, share), 6),
                        "rho_rare_energy": round(spearman(factors, rare_e), 6),
                        "factor_feature_half": round(hi, 6),
                        "factor_noise_half": round(lo, 6),
                        "factor_gap": round(hi - lo, 6),
                        "feature_share_mean": round(float(share.mean()), 6),
                        "stage_mean_factor": round(float(report.mean_factor), 6),
                        "test_acc": None,
                    }
                )
        generator = torch.Generator().manual_seed(_experiment_seed(seed, j))
        loader = make_loader(seen, config.batch_size, shuffle=True, generator=generator)
        train_to_threshold(model, optimizer, loader, config)
        if j > 0:
            acc = round(evaluate(model, test_loader)[0], 6)
            for row in rows[-2:]:
                row["test_acc"] = acc
    return rows


def _summary(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| layer | experiment | mean factor | at floor | ρ(factor, feature share) | ρ(factor, rare energy) "
        "| factor gap (feature half − noise half) |",
        "|---|---|---|---|---|---|---|",
    ]
    for layer in ("conv1", "conv2"):
        for exp in sorted({r["experiment"] for r in rows}):
            at = [r for r in rows if r["experiment"] == exp and r["layer"] == layer]

            def mean(key: str, at: list[dict[str, Any]] = at) -> str:
                values = [r[key] for r in at if r[key] == r[key]]  # drop NaN (constant factors)
                return f"{statistics.mean(values):+.3f}" if values else "n/a"

            lines.append(
                f"| {layer} | {exp} | {mean('mean_factor')} | {mean('at_floor')} | {mean('rho_feature_share')} | "
                f"{mean('rho_rare_energy')} | {mean('factor_gap')} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the analysis for the default ``features`` setting; write ``mechanism.csv`` and ``.md``.

    Parameters
    ----------
    argv:
        ``--out DIR`` (required) and ``--seeds 0,1,...`` (default: the default run's seeds).

    Returns
    -------
    int
        0.

    Examples
    --------
    >>> from torch_dash_optim.experiments.mechanism import main
    >>> main(["--help"])  # the run itself takes about a minute of CPU time
    Traceback (most recent call last):
    ...
    SystemExit: 0
    """
    p = argparse.ArgumentParser(prog="python -m torch_dash_optim.experiments.mechanism")
    p.add_argument("--out", type=Path, required=True, help="folder for mechanism.csv and mechanism.md")
    p.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)), help="comma-separated seeds")
    args = p.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds must be comma-separated integers such as 0,1,2; got {args.seeds!r}")
    preset = DATASET_PRESETS["features"]
    config = ProtocolConfig(num_chunks=preset["chunks"], lr=preset["lr"], max_epochs=preset["max_epochs"])
    torch.set_num_threads(1)
    data = make_features(FeatureSpec())
    rows = [row for seed in seeds for row in trace_dash(data, config, seed, MODEL_WIDTHS["patchcnn"])]
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "mechanism.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=MECHANISM_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    text = _summary(rows)
    (args.out / "mechanism.md").write_text(
        f"# DASH's factors against what each first-layer unit carries (seeds {args.seeds})\n\n"
        "Mean over seeds, per stage; the uniform ablation has ρ = 0 and gap = 0 by construction.\n\n"
        f"{text}\n"
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
