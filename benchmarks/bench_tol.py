r"""``tol=``: the time saved by skipping the batches the EMA cannot see, and the factor change it costs.

The shapes are those of the paper's last ResNet-18 experiment, made small enough for a CPU:
the harness's ResNet-18 (:class:`torch_dash_optim.experiments.models.ResNet18`, CIFAR stem
with the authors' max-pool) at a small width, and a loader over 50 chunks of random 3x32x32
images, one batch per chunk, in chunk order (a :class:`~torch.utils.data.DataLoader` over a
``TensorDataset``, so the skipped batches are not even loaded). Labels come from a fixed random
linear map of the images (a learnable task), and the model first trains one epoch of SGD on
them, so that its factors are not those of an untrained net.

For each ``tol``:

- **time**: ``on_new_data(loader, tol=tol)`` against the exact ``on_new_data(loader)``, timed
  side by side (paired CPU-time ratio, median of the repeats);
- **factor change**: the largest and the mean ``|factor(tol) - factor(exact)|`` over every
  unit (kernel slice, row, bias) with the default :math:`\lambda = 0.3`, and the largest change
  of the unclamped cosine :math:`\cos(w_u, G_u)` (which bounds the factor change);
- **the whole protocol**: the share of forward and backward passes saved over all 50
  experiments (experiment :math:`j` passes over :math:`j` batches), by counting.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from torch_dash_optim import DASHWrapper
from torch_dash_optim import functional as F
from torch_dash_optim.experiments.models import ResNet18
from torch_dash_optim.gather import gather_direction
from torch_dash_optim.tolerance import kept_batches, trim_loader

from .config import Config
from .results import Result, Run
from .timing import time_side_by_side

__all__ = ["TOLS", "make_protocol", "protocol_saving", "run"]

#: Tolerances measured.
TOLS: tuple[float, ...] = (1e-2, 1e-4, 1e-6)
ALPHA = 0.3


def make_protocol(chunks: int, chunk_size: int, width: int, seed: int = 0) -> tuple[nn.Module, DataLoader]:
    """The model, trained one epoch, and the loader of the last experiment (one batch per chunk).

    Examples
    --------
    >>> model, loader = make_protocol(chunks=3, chunk_size=2, width=4)
    >>> len(loader), next(iter(loader))[0].shape
    (3, torch.Size([2, 3, 32, 32]))
    """
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(chunks * chunk_size, 3, 32, 32, generator=gen)
    teacher = torch.randn(3 * 32 * 32, 10, generator=gen) / 32.0
    labels = (images.flatten(1) @ teacher).argmax(dim=1)
    torch.manual_seed(seed)
    model = ResNet18(10, width=width)
    loader = DataLoader(TensorDataset(images, labels), batch_size=chunk_size, shuffle=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for x, y in loader:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model, loader


def protocol_saving(chunks: int, alpha: float, tol: float) -> float:
    """Share of the gradient pass's batches that ``tol`` skips over a whole protocol of ``chunks``.

    Experiment :math:`j = 2..K` passes over :math:`j` batches (one per chunk so far).

    Examples
    --------
    >>> round(protocol_saving(50, 0.3, 1e-4), 3)   # 1 - (sum of min(j, 26)) / (sum of j), j = 2..50
    0.235
    """
    keep = kept_batches(alpha, tol)
    total = sum(range(2, chunks + 1))
    kept = sum(min(j, keep) for j in range(2, chunks + 1))
    return 1.0 - kept / total


def _cosines(model: nn.Module, loader: DataLoader, tol: float) -> dict[str, Tensor]:
    params = {n: p for n, p in model.named_parameters() if p.ndim > 1 or n == "fc.bias"}
    batches, _ = trim_loader(loader, alpha=ALPHA, average="ema", tol=tol)
    result = gather_direction(
        list(params.values()),
        batches,
        lambda b: nn.functional.cross_entropy(model(b[0]), b[1]),
        alpha=ALPHA,
        model=model,
        trainable=list(model.parameters()),
    )
    return {
        n: F.cosine_per_unit(p.detach(), d, F.unit_dims(p.ndim)).flatten()
        for (n, p), d in zip(params.items(), result.directions, strict=True)
        if d is not None
    }


def run(cfg: Config, out: Run) -> None:
    """Time and compare ``tol`` against exact on the protocol's last experiment."""
    chunks, chunk_size, width = (12, 4, 4) if cfg.quick else (50, 32, 16)
    tols = (0.1, 1e-2) if cfg.quick else TOLS
    model, loader = make_protocol(chunks, chunk_size, width)
    model.to(cfg.device)  # the loader's batches stay on the CPU: on_new_data moves them, as a user's would
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    opt = DASHWrapper(
        torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss(), alpha=ALPHA
    )

    def restore() -> None:
        model.load_state_dict(snapshot)

    reports = {}
    for tol in (0.0, *tols):
        restore()
        reports[tol] = opt.on_new_data(loader, tol=tol)
    restore()
    exact_cos = _cosines(model, loader, 0.0)
    methods = {"exact": lambda: opt.on_new_data(loader)}
    for tol in tols:
        methods[f"tol={tol:g}"] = lambda tol=tol: opt.on_new_data(loader, tol=tol)
    t = time_side_by_side(methods, min(cfg.repeats, 5), cfg.warmup, cfg.device, restore)
    restore()
    mparams = sum(p.numel() for p in model.parameters()) / 1e6
    setting = (
        f"ResNet-18 width {width} ({mparams:.2f}M params), {chunks} chunks x 1 batch of {chunk_size} "
        "random 3x32x32 images"
    )
    out.add(
        Result(
            "tol",
            f"exact on_new_data, {setting}",
            t.median("exact"),
            "s",
            note=f"mean factor {reports[0.0].mean_factor:.3f}, {_floor_share(reports[0.0]):.0%} of units at the floor",
            key="tol/exact_s",
        )
    )
    for tol in tols:
        exact, approx = reports[0.0], reports[tol]
        diffs = torch.cat([(approx.factors[k] - f).abs().flatten() for k, f in exact.factors.items()])
        cos = _cosines(model, loader, tol)
        restore()
        dcos = max(float((cos[k] - c).abs().max()) for k, c in exact_cos.items())
        name = f"tol={tol:g}"
        out.add(
            Result(
                "tol",
                f"{name}: time / exact",
                t.ratio(name, "exact"),
                "x",
                note=f"{approx.skipped_batches} of {chunks} batches skipped (not loaded), "
                f"{approx.num_batches} gathered",
                key=f"tol/{tol:g}/ratio",
            )
        )
        out.add(
            Result(
                "tol",
                f"{name}: largest factor change",
                float(diffs.max()),
                "",
                note=f"mean {float(diffs.mean()):.2g} over {diffs.numel()} units; largest cosine change {dcos:.2g}",
                key=f"tol/{tol:g}/max_factor_diff",
            )
        )
        out.add(
            Result(
                "tol",
                f"{name}: share of the protocol's gradient passes skipped",
                protocol_saving(chunks, ALPHA, tol),
                "",
                note=f"experiments 2..{chunks}, one batch per chunk: counted, not timed",
                key=f"tol/{tol:g}/protocol_saving",
            )
        )
        out.add(
            Result(
                "tol", f"{name}: batches skipped", float(approx.skipped_batches), "batches", key=f"tol/{tol:g}/skipped"
            )
        )


def _floor_share(report: object) -> float:
    params = report.params  # type: ignore[attr-defined]
    units = sum(p.units for p in params)
    return sum(p.at_floor * p.units for p in params) / units if units else 0.0
