"""A short timing run of the warm-start harness, projected to the paper's protocol. A timing, not a result.

The harness (:func:`torch_dash_optim.experiments.protocol.run_protocol`) runs on random
CIFAR-shaped tensors (3x32x32, 10 classes, random labels) with the harness's ResNet-18, for a
few chunks and a fixed number of epochs per experiment (the train-accuracy threshold is set
to 1.0, which random labels never reach, so every experiment trains ``max_epochs`` epochs).
From the records it derives the seconds per training sample-epoch, and projects the
paper-scale protocol (CIFAR-10: 50 chunks of 1000 images; experiment ``j`` trains on
``1000 j`` images) **per epoch trained at every experiment**: the real protocol trains each
experiment to 99.9 % train accuracy, whose number of epochs this timing cannot know, so the
projection is given per epoch and the user multiplies by the epochs they expect.
The accuracies of this run mean nothing (random labels).
"""

from __future__ import annotations

import time

import torch
from torch.utils.data import TensorDataset

from torch_dash_optim.experiments.config import ProtocolConfig
from torch_dash_optim.experiments.models import ResNet18
from torch_dash_optim.experiments.protocol import run_protocol

from .config import Config
from .results import Result, Run

__all__ = ["PAPER_CHUNKS", "PAPER_CHUNK_SIZE", "paper_sample_epochs", "run"]

PAPER_CHUNKS = 50
PAPER_CHUNK_SIZE = 1000


def paper_sample_epochs(chunks: int = PAPER_CHUNKS, chunk_size: int = PAPER_CHUNK_SIZE) -> int:
    """Training samples seen over the protocol with one epoch per experiment.

    Examples
    --------
    >>> paper_sample_epochs()
    1275000
    """
    return chunk_size * chunks * (chunks + 1) // 2


def run(cfg: Config, out: Run) -> None:
    """Time a few experiments of ``warm`` and ``dash`` and project the paper's protocol."""
    chunks, chunk_size, epochs, width = (2, 16, 1, 4) if cfg.quick else (4, 1000, 2, 64)
    gen = torch.Generator().manual_seed(0)
    n = chunks * chunk_size
    train = TensorDataset(torch.randn(n, 3, 32, 32, generator=gen), torch.randint(0, 10, (n,), generator=gen))
    m = 32 if cfg.quick else 1000
    test = TensorDataset(torch.randn(m, 3, 32, 32, generator=gen), torch.randint(0, 10, (m,), generator=gen))
    config = ProtocolConfig(num_chunks=chunks, max_epochs=epochs, threshold=1.0, batch_size=128)
    start = time.perf_counter()
    records = run_protocol(
        train,
        test,
        lambda: ResNet18(10, width=width),
        config=config,
        methods=("warm", "dash"),
        device=cfg.device,
        progress=False,
    )
    wall = time.perf_counter() - start
    setting = f"{chunks} chunks of {chunk_size} random 3x32x32, ResNet-18 width {width}, {epochs} epoch(s) each"
    out.add(Result("harness", f"wall time of the run ({setting}, warm and dash)", wall, "s", key="harness/wall_s"))
    for method in ("warm", "dash"):
        rows = [r for r in records if r["method"] == method]
        seconds = sum(r["seconds"] for r in rows)
        sample_epochs = sum(r["epochs"] * r["num_train"] for r in rows)
        per = seconds / sample_epochs
        out.add(
            Result(
                "harness",
                f"{method}: seconds per experiment",
                seconds / len(rows),
                "s",
                note=f"{sample_epochs} sample-epochs in {seconds:.1f} s (training, DASH pass, test)",
                key=f"harness/{method}/s_per_experiment",
            )
        )
        out.add(
            Result(
                "harness",
                f"{method}: projected paper-scale protocol, per epoch trained at each experiment",
                per * paper_sample_epochs() / 3600,
                "h",
                note=(
                    "a projection from this timing, not a result: 50 chunks of 1000, one (method, seed); "
                    "multiply by the epochs each experiment needs to reach 99.9% train accuracy"
                ),
                key=f"harness/{method}/projected_h_per_epoch",
            )
        )
