"""Run the benchmark sections in order and collect one :class:`~benchmarks.results.Run`."""

from __future__ import annotations

import time

from . import bench_cifar, bench_gather, bench_gpu, bench_harness, bench_scaling, bench_shrink, bench_step, bench_tol
from .config import Config
from .models import make_case
from .results import Run, machine

__all__ = ["DEFAULT_SECTIONS", "SECTIONS", "run_all"]

#: Section names, in the order they run.
SECTIONS: tuple[str, ...] = ("gather", "shrink", "step", "scaling", "tol", "gpu", "cifar", "harness")
#: The sections of a plain ``python -m benchmarks``; ``cifar`` and ``harness`` (CIFAR-10-sized
#: passes and a harness timing, meant for a GPU) are asked for by name, as ``scripts/gpu-check`` does.
DEFAULT_SECTIONS: tuple[str, ...] = ("gather", "shrink", "step", "scaling", "tol", "gpu")


def run_all(cfg: Config, command: str, sections: tuple[str, ...] = SECTIONS, rss: bool = True, log: bool = True) -> Run:
    """Run ``sections`` with ``cfg``; ``rss`` adds the subprocess RSS cross-check of memory.

    Examples
    --------
    >>> run = run_all(Config.make(quick=True), "doctest", sections=("step",), log=False)
    >>> {r.section for r in run.results}
    {'step'}
    """
    out = Run(command, machine(cfg.device))
    start = time.perf_counter()

    def say(msg: str) -> None:
        if log:
            print(f"[{time.perf_counter() - start:6.1f} s] {msg}", flush=True)

    floors: dict[str, float] = {}
    per_sample: dict[str, float] = {}
    if "gather" in sections:
        say("gather: on_new_data vs floor pass vs naive, time and memory")
        floors = bench_gather.run(cfg, out, rss=rss)
        case = make_case("resnet18", quick=cfg.quick)
        per_sample["resnet18"] = floors["resnet18"] / case.num_samples
    if "shrink" in sections:
        say("shrink: factors + in-place multiply, library vs per-tensor loop")
        per_sample["gpt100m"] = bench_shrink.gpt_floor(cfg)
        bench_shrink.run(
            cfg, out, floors={k: v for k, v in floors.items() if k == "resnet18"}, floor_per_sample=per_sample
        )
    if "step" in sections:
        say("step: wrapper overhead")
        bench_step.run(cfg, out)
    if "scaling" in sections:
        say("scaling: data size and parameter count")
        bench_scaling.run(cfg, out)
    if "tol" in sections:
        say("tol: skipping the batches the EMA cannot see, against exact")
        bench_tol.run(cfg, out)
    if "gpu" in sections:
        say("gpu: synchronisations in the gathering loop")
        bench_gpu.run(cfg, out)
    if "cifar" in sections:
        say("cifar: one CIFAR-10-sized gradient pass, ours against the authors' gathering")
        bench_cifar.run(cfg, out)
    if "harness" in sections:
        say("harness: a short timing run, projected to the paper's protocol")
        bench_harness.run(cfg, out)
    out.seconds = time.perf_counter() - start
    say("done")
    return out
