"""Command line of the harness: ``dash-warmstart`` or ``python -m torch_dash_optim.experiments``.

With no arguments it runs the embedded default: MNIST-1D generated locally, a small 1-D CNN,
the methods cold, warm, sp, fire and dash with SGD over seeds 0, 1 and 2, in parallel worker
processes (``--jobs``), and prints the mean ± std table. Every setting can be overridden; see
``--help``. Every bad argument ends in a one-line message that names the fix, with exit
status 2.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .config import DEFAULT_METHODS, METHODS, OPTIMIZERS, ProtocolConfig
from .datasets import DATASETS, load_dataset
from .models import MODELS, build_model
from .protocol import OutputExistsError, SettingsMismatchError, run_protocol
from .provenance import add_invocation
from .store import atomic_write, read_config
from .summary import factor_markdown, summary_markdown

__all__ = ["MODEL_PRESETS", "PRESETS", "build_parser", "main"]

#: Per-data-set defaults of the settings left unset on the command line. The image data sets
#: use the authors' values; MNIST-1D those of the embedded default run (see the docs). The
#: width is the model's: 32 channels for ``cnn1d``, 256 units for ``--model mlp`` on MNIST-1D.
PRESETS: dict[str, dict[str, Any]] = {
    "mnist1d": {
        "model": "cnn1d",
        "width": None,
        "depth": 3,
        "mlp_bn": False,
        "chunks": 10,
        "lr": 0.05,
        "max_epochs": 100,
        "l2_init": 0.001,
        "train_size": None,
    },
    **{
        name: {
            "model": "resnet18",
            "width": 1000,
            "depth": 2,
            "mlp_bn": True,
            "chunks": 50,
            "lr": 0.001,
            "max_epochs": 10000,
            "l2_init": 0.01,
            "train_size": 50000 if name == "svhn" else None,
        }
        for name in ("cifar10", "cifar100", "svhn", "tiny-imagenet")
    },
}


#: Settings that depend on the model as well as the data set (``--model mlp`` on MNIST-1D keeps
#: the settings of the earlier MLP default).
MODEL_PRESETS: dict[tuple[str, str], dict[str, Any]] = {("mnist1d", "mlp"): {"lr": 0.01, "max_epochs": 300}}

#: Model widths when ``--width`` is not given.
_WIDTHS = {"cnn1d": 32, "mnist1d-mlp": 256, "mlp": 1000}


def _twice(items: Sequence[Any]) -> list[Any]:
    return sorted({x for x in items if list(items).count(x) > 1}, key=str)


def _names(known: Sequence[str], what: str) -> Any:
    def parse(text: str) -> list[str]:
        names = [t.strip() for t in text.split(",") if t.strip()]
        if names == ["all"]:
            return list(known)
        bad = [n for n in names if n not in known]
        if bad or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(bad) or repr(text)}; use a comma-separated list of "
                f"{', '.join(known)} (or 'all')"
            )
        if _twice(names):
            raise argparse.ArgumentTypeError(
                f"{text!r} names {', '.join(_twice(names))} twice; give each {what} once"
            )
        return names

    return parse


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"seeds must be comma-separated integers such as 0,1,2; got {text!r}"
        ) from None
    if not seeds or any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"seeds must be integers >= 0, such as 0,1,2; got {text!r}")
    if _twice(seeds):
        raise argparse.ArgumentTypeError(
            f"{text!r} names seed {', '.join(map(str, _twice(seeds)))} twice; give each seed once, e.g. 0,1,2"
        )
    return seeds


def _kernels(text: str) -> list[int]:
    try:
        sizes = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        sizes = []
    if not sizes or any(k < 1 for k in sizes):
        raise argparse.ArgumentTypeError(f"kernels must be comma-separated sizes >= 1 such as 5,3,3; got {text!r}")
    return sizes


def _negative_values(argv: Sequence[str]) -> list[str]:
    """Join ``--seeds -1,2`` into ``--seeds=-1,2`` so argparse reports the value, not a missing one."""
    out: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg in ("--seed", "--seeds", "--lr", "--momentum", "--weight-decay", "--rho", "--threshold"):
            value = next(it, None)
            if value is not None and re.fullmatch(r"-[\d.][\d.,eE+-]*", value):
                out.append(f"{arg}={value}")
                continue
            out.append(arg)
            if value is not None:
                out.append(value)
            continue
        out.append(arg)
    return out


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser (defaults of ``None`` come from :data:`PRESETS`).

    Examples
    --------
    >>> build_parser().parse_args(["--seeds", "0,1,2"]).seeds
    [0, 1, 2]
    """
    d = ProtocolConfig()
    p = argparse.ArgumentParser(
        prog="dash-warmstart",
        description="The DASH paper's warm-start protocol: the training set arrives in K chunks; at each "
        "experiment every method trains on all chunks so far until 99.9% train accuracy and is tested.",
    )
    g = p.add_argument_group("data and model")
    g.add_argument(
        "--dataset", default="mnist1d", choices=DATASETS, help="default: mnist1d (generated locally)"
    )
    g.add_argument(
        "--data-dir", type=Path, help="folder of the image data sets (never downloaded; not for mnist1d)"
    )
    g.add_argument("--train-size", type=int, help="use a random subset of the training set (svhn: 50000)")
    g.add_argument("--model", choices=MODELS, help="default: cnn1d for mnist1d, resnet18 for images")
    g.add_argument(
        "--width",
        type=int,
        help="cnn1d channels (default 32); MLP width (mnist1d: 256, images: 1000 as the authors)",
    )
    g.add_argument(
        "--kernels", type=_kernels, help="cnn1d kernel sizes, one conv layer each (default 5,3,3)"
    )
    g.add_argument(
        "--depth", type=int, help="MLP Linear layers (mnist1d: 3, i.e. two hidden layers; images: 2)"
    )
    g.add_argument(
        "--mlp-bn",
        action=argparse.BooleanOptionalAction,
        help="BatchNorm after each hidden MLP layer (images: on, as the authors; mnist1d: off)",
    )
    g = p.add_argument_group("protocol (defaults: the authors' unless the data set's preset says otherwise)")
    g.add_argument("--chunks", type=int, help="K, number of chunks (mnist1d: 10, images: 50)")
    g.add_argument(
        "--lr", type=float, help="learning rate (mnist1d: 0.05, or 0.01 with --model mlp; images: 0.001)"
    )
    g.add_argument("--momentum", type=float, default=d.momentum)
    g.add_argument("--weight-decay", type=float, default=d.weight_decay)
    g.add_argument("--batch-size", type=int, default=d.batch_size)
    g.add_argument("--test-batch-size", type=int, default=d.test_batch_size)
    g.add_argument(
        "--threshold", type=float, default=d.threshold, help="train accuracy that ends an experiment"
    )
    g.add_argument(
        "--max-epochs",
        type=int,
        help="epoch cap per experiment (mnist1d: 100, or 300 with --model mlp; images: 10000)",
    )
    g.add_argument("--rho", type=float, default=d.rho, help="SAM radius (default 0.1)")
    g.add_argument("--dash-lambd", type=float, default=d.dash_lambd)
    g.add_argument("--dash-alpha", type=float, default=d.dash_alpha)
    g.add_argument("--sp-shrink", type=float, default=d.sp_shrink, help="Shrink & Perturb factor")
    g.add_argument("--sp-sigma", type=float, default=d.sp_sigma, help="Shrink & Perturb noise std")
    g.add_argument(
        "--l2-init", type=float, help="L2-init strength (mnist1d: 0.001, images: 0.01 as the authors)"
    )
    g = p.add_argument_group("what to run")
    g.add_argument(
        "--methods",
        type=_names(METHODS, "method"),
        default=list(DEFAULT_METHODS),
        help=f"comma-separated, some of {','.join(METHODS)}, or all (default: {','.join(DEFAULT_METHODS)})",
    )
    g.add_argument(
        "--optimizers",
        type=_names(OPTIMIZERS, "optimizer"),
        default=["sgd"],
        help="comma-separated: sgd, sam or sgd,sam (default sgd)",
    )
    seeds = g.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, help="one seed")
    seeds.add_argument("--seeds", type=_seeds, help="comma-separated seeds (default 0,1,2)")
    g = p.add_argument_group("output and hardware")
    g.add_argument(
        "--out", type=Path, default=Path("warmstart-results"), help="output folder (default: warmstart-results)"
    )
    g.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    g.add_argument(
        "--jobs",
        type=int,
        help="runs (seed, optimizer, method) in parallel worker processes; default: the number of CPU "
        "cores, or one per visible GPU with --device cuda; 1: all in this process",
    )
    g.add_argument("--workers", type=int, default=0, help="DataLoader workers (image folders)")
    g.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads per process (default 1: fastest for small models and on shared machines)",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    return p


def _device(parser: argparse.ArgumentParser, text: str) -> torch.device:
    try:
        device = torch.device(text)
    except RuntimeError:
        parser.error(f"--device {text!r} is not a device; use cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {text} was asked for, but torch sees no CUDA GPU; use --device cpu")
    return device


def _check_out(parser: argparse.ArgumentParser, out: Path, resume: bool) -> None:
    """Refuse, in one line, an ``--out`` that cannot be a results folder."""
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} is a file, not a folder; choose a folder path, e.g. --out warmstart-results")
    if resume and read_config(out) is None:
        parser.error(f"--resume: {out} holds no run to continue (no config.json); drop --resume to start one there")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        parser.error(f"--out {out} cannot be written ({reason.lower()}); choose a writable folder, e.g. --out results")


def _config_error(text: str) -> str:
    """Turn ``ProtocolConfig``'s ``name=value`` wording into the command line's ``--name value``."""
    text = text.replace("num_chunks=", "chunks=")
    return re.sub(r"^(\w+)=(\S+)", lambda m: f"--{m[1].replace('_', '-')} {m[2]}", text)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the harness from command-line arguments; return the exit status.

    Parameters
    ----------
    argv:
        The arguments, without the program name (``dash-warmstart --help`` lists them);
        ``None`` reads ``sys.argv[1:]``.

    Returns
    -------
    int
        ``0`` when every run finished, ``130`` when interrupted (the finished runs are kept
        for ``--resume``).

    Raises
    ------
    SystemExit
        With status 2 (from ``argparse``) for a bad argument, naming it and the fix.

    Examples
    --------
    >>> main(["--chunks", "1"])
    Traceback (most recent call last):
    ...
    SystemExit: 2
    """
    parser = build_parser()
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(_negative_values(raw))
    if args.model is None:
        args.model = PRESETS[args.dataset]["model"]
    preset = {**PRESETS[args.dataset], **MODEL_PRESETS.get((args.dataset, args.model), {})}
    for key in ("model", "depth", "mlp_bn", "chunks", "lr", "max_epochs", "l2_init", "train_size"):
        if getattr(args, key) is None:
            setattr(args, key, preset[key])
    if args.width is None:
        args.width = _WIDTHS["mnist1d-mlp" if (args.model, args.dataset) == ("mlp", "mnist1d") else args.model] \
            if args.model in ("cnn1d", "mlp") else 0
    if args.kernels is not None and args.model != "cnn1d":
        parser.error(f"--kernels is a setting of --model cnn1d, not {args.model}; drop --kernels")
    kernels = args.kernels or [5, 3, 3]
    try:
        config = ProtocolConfig(
            num_chunks=args.chunks,
            lr=args.lr,
            momentum=args.momentum,
            weight_decay=args.weight_decay,
            batch_size=args.batch_size,
            test_batch_size=args.test_batch_size,
            threshold=args.threshold,
            max_epochs=args.max_epochs,
            rho=args.rho,
            dash_lambd=args.dash_lambd,
            dash_alpha=args.dash_alpha,
            sp_shrink=args.sp_shrink,
            sp_sigma=args.sp_sigma,
            l2_init=args.l2_init,
        )
    except ValueError as err:
        parser.error(_config_error(str(err)))
    for name in ("depth", "workers"):
        if getattr(args, name) < (0 if name == "workers" else 1):
            parser.error(f"--{name} {getattr(args, name)} must be >= {0 if name == 'workers' else 1}")
    if args.model in ("cnn1d", "mlp") and args.width < 1:
        parser.error(f"--width {args.width} must be >= 1")
    if args.threads < 1:
        parser.error(f"--threads {args.threads} must be >= 1")
    if args.jobs is not None and args.jobs < 1:
        parser.error(f"--jobs {args.jobs} must be >= 1 (1 runs everything in this process)")
    device = _device(parser, args.device)
    seeds = args.seeds if args.seeds is not None else ([args.seed] if args.seed is not None else [0, 1, 2])
    if any(s < 0 for s in seeds):
        parser.error(f"--seed {seeds[0]} must be >= 0")
    if args.dataset == "mnist1d" and args.data_dir is not None:
        parser.error("--data-dir is for the image data sets; mnist1d is generated locally: drop --data-dir")
    if args.dataset != "mnist1d" and args.data_dir is None:
        parser.error(
            f"--dataset {args.dataset} is read from a local folder: pass --data-dir DIR "
            "(nothing is downloaded)"
        )
    _check_out(parser, args.out, args.resume)
    torch.set_num_threads(args.threads)
    try:
        data = load_dataset(args.dataset, args.data_dir, train_size=args.train_size)
        factory = build_model(
            args.model,
            data.input_shape,
            data.num_classes,
            width=args.width,
            depth=args.depth,
            batch_norm=args.mlp_bn,
            kernels=kernels,
        )
    except (ValueError, FileNotFoundError, ImportError) as err:
        parser.error(str(err))
    setup: dict[str, Any] = {"dataset": args.dataset, "train_size": args.train_size, "model": args.model}
    if args.model == "mlp":
        setup.update(width=args.width, depth=args.depth, mlp_bn=args.mlp_bn)
    elif args.model == "cnn1d":
        setup.update(width=args.width, kernels=list(kernels))
    runs = len(seeds) * len(args.optimizers) * len(args.methods)
    if args.jobs is not None:
        jobs = args.jobs
    elif device.type == "cuda":
        jobs = torch.cuda.device_count() if device.index is None else 1
    else:
        jobs = _cores()
    jobs = max(1, min(jobs, runs))
    start = time.perf_counter()
    try:
        records = run_protocol(
            data.train,
            data.test,
            factory,
            config=config,
            methods=args.methods,
            optimizers=args.optimizers,
            seeds=seeds,
            out=args.out,
            resume=args.resume,
            device=device,
            workers=args.workers,
            progress=not args.no_progress,
            setup=setup,
            jobs=jobs,
            threads=args.threads,
        )
    except OutputExistsError:
        parser.error(
            f"--out {args.out} already holds results; add --resume to continue that run, or choose another --out"
        )
    except SettingsMismatchError as err:
        parser.error(str(err).replace("or a new --out", "or another --out"))
    except KeyboardInterrupt:
        print(
            f"\ninterrupted; finished experiments are saved in {args.out}. Continue with the same "
            "command plus --resume.",
            file=sys.stderr,
        )
        return 130
    elapsed = time.perf_counter() - start
    table = summary_markdown(records)
    factors = factor_markdown(records)
    command = " ".join(["dash-warmstart", *raw])
    cpu = sum(r.get("cpu_seconds") or 0.0 for r in records)
    add_invocation(args.out, command, jobs, args.threads, elapsed, cpu)
    text = (
        f"# Warm-start protocol: {args.dataset}, {args.model}, {config.num_chunks} chunks\n\n"
        f"Command: `{command}`  \nWall time of this invocation: {elapsed:.0f} s ({jobs} job(s)); CPU time of "
        f"all experiments (resumed ones included): {cpu:.0f} s\n\n{table}\n"
        + (f"\n## DASH's factors per layer kind\n\n{factors}\n" if factors else "")
    )
    atomic_write(args.out / "summary.md", text)
    print(table)
    if factors:
        print("\nDASH's factors per layer kind:\n" + factors)
    if not args.no_plot:
        try:
            from .plot import plot_results

            plot_results(
                records,
                args.out / "plot.png",
                title=f"{args.dataset}, {args.model}, {config.num_chunks} chunks",
            )
        except ImportError as err:
            print(f"no plot: {err}", file=sys.stderr)
    print(
        f"\nresults in {args.out}/ (summary.md, experiments.csv, dash-factors.csv, experiments.json, "
        f"provenance.json{'' if args.no_plot else ', plot.png'}); {elapsed:.0f} s"
    )
    return 0
