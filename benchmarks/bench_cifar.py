"""The cost of one DASH gradient pass at CIFAR-10 size, to compare with published figures.

FIRE (Han et al., ICLR 2026) reports DASH at 69 s and 2834 MB on CIFAR-10 with ResNet-18.
This section times one gradient pass as the authors' protocol makes it at the last
experiment: 50,000 images of 3x32x32 (random here; the time does not depend on the pixel
values), batches of 1000, the harness's ResNet-18 (:func:`torch_dash_optim.experiments.models.resnet18`,
the authors' CIFAR variant). Side by side: the floor (a plain forward and backward pass),
ours (:meth:`~torch_dash_optim.DASHWrapper.on_new_data`) and the authors' gathering
(:func:`benchmarks.naive.naive_dash`: deep copy plus a new EMA tensor per parameter per batch),
each with the data already on the device. Memory on CUDA is ``torch.cuda.max_memory_allocated``
during the call, over what was allocated before it (model and data), and in total.

Not part of the default sections (on a CPU it takes long): ``--sections cifar``.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor, nn

from torch_dash_optim import DASHWrapper
from torch_dash_optim.experiments.models import ResNet18

from .bench_gather import floor_pass
from .config import Config
from .memory import allocator_peak, cuda_peak
from .models import Case
from .naive import naive_dash
from .results import Result, Run
from .timing import time_side_by_side

__all__ = ["make_cifar_case", "run"]


def make_cifar_case(samples: int, batch: int, width: int, device: str) -> Case:
    """``samples`` random CIFAR-shaped images in batches of ``batch``, on ``device``, and ResNet-18.

    Examples
    --------
    >>> case = make_cifar_case(8, 4, 4, "cpu")
    >>> len(case.loader), case.loader[0][0].shape
    (2, torch.Size([4, 3, 32, 32]))
    """
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(samples, 3, 32, 32, generator=gen).to(device)
    labels = torch.randint(0, 10, (samples,), generator=gen).to(device)
    loader: list[tuple[Tensor, Tensor]] = [
        (images[i : i + batch], labels[i : i + batch]) for i in range(0, samples, batch)
    ]
    torch.manual_seed(0)
    return Case("cifar10-resnet18", ResNet18(10, width=width).to(device), loader, nn.CrossEntropyLoss())


def run(cfg: Config, out: Run) -> None:
    """Time (and on CUDA measure) floor, ours and the authors' gathering on a CIFAR-10-sized pass."""
    samples, batch, width = (32, 16, 4) if cfg.quick else (50_000, 1000, 64)
    case = make_cifar_case(samples, batch, width, cfg.device)
    model = case.model
    snapshot = [p.detach().clone() for p in model.parameters()]
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=case.loss_fn)

    def setup() -> None:
        with torch.no_grad():
            for p, s in zip(model.parameters(), snapshot, strict=True):
                p.copy_(s)
                p.grad = None

    methods = {
        "floor": lambda: floor_pass(case),
        "ours": lambda: opt.on_new_data(case.loader),
        "authors": lambda: naive_dash(model, case.loss_fn, case.loader, train_mode=False),
    }
    repeats = 1 if cfg.quick else min(cfg.repeats, 3)
    # Wall time: the figure to compare with a published number is seconds on a clock.
    t = time_side_by_side(methods, repeats, cfg.warmup, cfg.device, setup, clock=time.perf_counter)
    setting = f"{samples} random 3x32x32, batches of {batch}, ResNet-18 width {width}"
    for name in methods:
        out.add(Result("cifar", f"{name}: one gradient pass ({setting})", t.median(name), "s", key=f"cifar/{name}_s"))
    out.add(Result("cifar", "ours / floor", t.ratio("ours", "floor"), "x", key="cifar/ours_over_floor"))
    out.add(Result("cifar", "authors' / ours", t.ratio("authors", "ours"), "x", key="cifar/authors_over_ours"))
    cuda = cfg.device.startswith("cuda")
    base = torch.cuda.memory_allocated(cfg.device) if cuda else 0
    for name, fn in methods.items():
        setup()
        if cuda:
            torch.cuda.empty_cache()
        peak = cuda_peak(fn, cfg.device) if cuda else allocator_peak(fn)
        how = "torch.cuda.max_memory_allocated" if cuda else "torch CPU allocator peak (torch.profiler)"
        out.add(
            Result(
                "cifar",
                f"{name}: peak memory during the pass, over model and data",
                peak / 2**20,
                "MiB",
                note=f"{how}; with the model and data resident: {(peak + base) / 2**20:.0f} MiB",
                key=f"cifar/{name}_mib",
            )
        )
    setup()
