"""The staged protocol: each method trained as the text arrives, one record per stage; every seed and method.

:func:`~torch_dash_optim.experiments.text.run_seed_method` runs one method on one seed's text
through every stage; :func:`~torch_dash_optim.experiments.text.run_text` runs every (seed, method),
here or in worker processes, and sorts the records (their keys:
:data:`~torch_dash_optim.experiments.text.protocol.RECORD_FIELDS`).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ...baselines import shrink_perturb_
from ...wrapper import DASHWrapper
from ..workers import run_in_workers
from .corpus import Split, draw_split, read_corpus, windows
from .model import CausalLM, heldout_loss, next_token_loss
from .settings import _DEFAULT_SEEDS, METHODS, TextConfig

__all__ = ["RECORD_FIELDS", "run_seed_method", "run_text"]

#: Columns of ``records.csv`` and keys of each record.
RECORD_FIELDS: tuple[str, ...] = (
    "seed",
    "method",
    "stage",
    "train_bytes",
    "windows",
    "steps",
    "train_loss",
    "heldout_loss",
    "heldout_ppl",
    "heldout_bpb",
    "dash_mean_factor",
    "dash_at_floor",
    "dash_units",
    "seconds",
    "cpu_seconds",
)


def _seed_of(*parts: int) -> int:
    """A seed for one purpose of one run, e.g. ``(seed, stage, 1)``, stable across runs and methods."""
    value = 0
    for p in parts:
        value = (value * 1_000_003 + p + 1) % (2**63 - 1)
    return value


def _new_model(config: TextConfig, seed: int, stage: int) -> CausalLM:
    """The model that ``seed`` starts ``stage`` from when it starts afresh (the same for every method)."""
    with torch.random.fork_rng(devices=[]):  # seeded, and the caller's generator left as it was
        torch.manual_seed(_seed_of(seed, stage, 0))
        return CausalLM(256, config.context, config.width, config.heads, config.layers)


def _lr_at(step: int, total: int, config: TextConfig) -> float:
    """Linear warm-up over ``warmup * total`` steps, then cosine decay to ``lr_final * lr``."""
    warm = max(1, round(config.warmup * total)) if config.warmup > 0 else 0
    if step < warm:
        return config.lr * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return config.lr * (config.lr_final + (1 - config.lr_final) * 0.5 * (1 + math.cos(math.pi * progress)))


def _batches(data: Tensor, batch_size: int) -> list[Tensor]:
    """``data`` cut into batches of ``batch_size`` windows, in order (the last one may be shorter)."""
    return [data[i : i + batch_size] for i in range(0, len(data), batch_size)]


def run_seed_method(
    method: str, seed: int, config: TextConfig, split: Split, threads: int | None = None
) -> list[dict[str, Any]]:
    """Run one method on one seed's text through every stage; return one record per stage.

    Parameters
    ----------
    method:
        One of :data:`~torch_dash_optim.experiments.text.settings.METHODS`.
    seed:
        The seed (it fixes the initial models, the batch order and the S&P noise).
    config:
        The settings.
    split:
        The seed's text (:func:`draw_split`).
    threads:
        Set ``torch.set_num_threads`` first (``None``: leave it).

    Returns
    -------
    list of dict
        One record per stage, with the keys of :data:`~torch_dash_optim.experiments.text.protocol.RECORD_FIELDS`.

    Examples
    --------
    >>> from torch_dash_optim.experiments.text import QUICK
    >>> split = draw_split(read_corpus(), 0, QUICK)
    >>> [(r["stage"], r["steps"]) for r in run_seed_method("sp", 0, QUICK, split)]
    [(1, 8), (2, 15)]
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not one of {', '.join(METHODS)}")
    if threads is not None:
        torch.set_num_threads(threads)
    heldout = windows(split.heldout, config.context)
    chunk_windows = [windows(c, config.context) for c in split.chunks(config.chunks)]
    model = _new_model(config, seed, 1)
    records = []
    for stage in range(1, config.chunks + 1):
        start, cpu_start = time.perf_counter(), time.process_time()
        seen = torch.cat(chunk_windows[:stage])  # the text so far, in arrival order: new text last
        info: dict[str, Any] = {}
        if stage > 1:
            if method == "cold":
                model = _new_model(config, seed, stage)
            elif method == "sp":
                g = torch.Generator().manual_seed(_seed_of(seed, stage, 2))
                shrink_perturb_(model, config.sp_shrink, config.sp_sigma, generator=g)
        base = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        opt: torch.optim.Optimizer = base
        if method == "dash":
            opt = DASHWrapper(base, model=model, batch_loss=next_token_loss, lambd=config.dash_lambd,
                              alpha=config.dash_alpha)
            if stage > 1:
                report = opt.on_new_data(_batches(seen, config.batch_size))
                info = {"dash_mean_factor": report.mean_factor, "dash_at_floor": report.at_floor,
                        "dash_units": report.units}
        g = torch.Generator().manual_seed(_seed_of(seed, stage, 1))  # the same batches for every method
        per_epoch = math.ceil(len(seen) / config.batch_size)
        total = config.epochs * per_epoch
        model.train()
        step, last_epoch = 0, []
        for _epoch in range(config.epochs):
            order = torch.randperm(len(seen), generator=g)
            last_epoch = []
            for i in range(0, len(seen), config.batch_size):
                for group in opt.param_groups:
                    group["lr"] = _lr_at(step, total, config)
                loss = next_token_loss(model, seen[order[i : i + config.batch_size]])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
                opt.step()
                last_epoch.append(float(loss.detach()))
                step += 1
        test = heldout_loss(model, heldout, config.batch_size * 2)
        records.append({
            "seed": seed,
            "method": method,
            "stage": stage,
            "train_bytes": stage * len(split.train) // config.chunks,
            "windows": len(seen),
            "steps": step,
            "train_loss": sum(last_epoch) / len(last_epoch),
            "heldout_loss": test,
            "heldout_ppl": math.exp(test),
            "heldout_bpb": test / math.log(2),
            "dash_mean_factor": info.get("dash_mean_factor"),
            "dash_at_floor": info.get("dash_at_floor"),
            "dash_units": info.get("dash_units"),
            "seconds": round(time.perf_counter() - start, 3),
            "cpu_seconds": round(time.process_time() - cpu_start, 3),
        })
    return records


def _work(job: tuple[str, int, TextConfig, str | None, int]) -> list[dict[str, Any]]:
    """One worker's run: read the corpus, draw the seed's split, run the method."""
    method, seed, config, root, threads = job
    split = draw_split(read_corpus(root), seed, config)
    return run_seed_method(method, seed, config, split, threads)



def run_text(
    config: TextConfig = TextConfig(),  # noqa: B008 (frozen: one shared default is safe)
    seeds: Sequence[int] = _DEFAULT_SEEDS,
    methods: Sequence[str] = METHODS,
    root: Path | str | None = None,
    jobs: int = 1,
    threads: int = 1,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Run every (seed, method) of the staged protocol and return the records, sorted.

    Parameters
    ----------
    config:
        The settings (:class:`TextConfig`).
    seeds:
        The seeds; each draws its own text (:func:`draw_split`).
    methods:
        Some of :data:`~torch_dash_optim.experiments.text.settings.METHODS`.
    root:
        The folder of ``.py`` files (default: the standard library).
    jobs:
        Worker processes (``spawn``), one (seed, method) run each; 1 runs in this process.
        The records do not depend on it.
    threads:
        ``torch`` threads per run.
    progress:
        Print one line per finished run to stderr.

    Returns
    -------
    list of dict
        One record per seed, method and stage
        (:data:`~torch_dash_optim.experiments.text.protocol.RECORD_FIELDS`), sorted by seed,
        method (in the order of :data:`~torch_dash_optim.experiments.text.settings.METHODS`) and stage.

    Examples
    --------
    >>> from torch_dash_optim.experiments.text import QUICK
    >>> recs = run_text(QUICK, seeds=[0], methods=["warm", "dash"])
    >>> [(r["method"], r["stage"]) for r in recs]
    [('warm', 1), ('warm', 2), ('dash', 1), ('dash', 2)]
    """
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; use some of {', '.join(METHODS)}")
    if not methods:
        raise ValueError(f"methods={list(methods)!r}; use some of {', '.join(METHODS)}")
    if len(set(methods)) != len(methods):
        raise ValueError(f"methods {list(methods)!r} lists one twice")
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"seeds={list(seeds)!r} must be one or more integers >= 0")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds {list(seeds)!r} lists one twice")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs={jobs!r} must be an integer >= 1 (1: run everything in this process)")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads={threads!r} must be an integer >= 1")
    root = None if root is None else str(root)
    corpus = read_corpus(root)
    for s in seeds:
        draw_split(corpus, s, config)  # a corpus too small fails here, before any training
    todo = [(m, int(s), config, root, threads) for s in seeds for m in methods]
    results: list[list[dict[str, Any]]] = []

    def done(recs: list[dict[str, Any]]) -> None:
        """Keep one run's records (and report it, with ``progress``)."""
        if progress:
            r = recs[-1]
            print(f"  seed {r['seed']} {r['method']:>4}: held-out loss {r['heldout_loss']:.4f} at stage {r['stage']}, "
                  f"{sum(x['cpu_seconds'] for x in recs):.0f} s CPU", file=sys.stderr, flush=True)
        results.append(recs)

    if jobs == 1:
        previous = torch.get_num_threads()
        try:
            for m, s, c, _r, t in todo:
                done(run_seed_method(m, s, c, draw_split(corpus, s, c), t))
        finally:
            torch.set_num_threads(previous)
    else:
        run_in_workers(_work, todo, lambda _job, recs: done(recs), jobs=jobs, threads=threads)
    order = {m: i for i, m in enumerate(METHODS)}
    flat = [r for recs in results for r in recs]
    return sorted(flat, key=lambda r: (r["seed"], order[r["method"]], r["stage"]))

