"""Command line of the harness: ``dash-warmstart`` or ``python -m torch_dash_optim.experiments``.

With no arguments it runs the embedded default (MNIST-1D generated locally, an MLP, every
method, SGD, one seed) in a few minutes on a CPU. Every setting can be overridden; see
``--help``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .config import METHODS, OPTIMIZERS, ProtocolConfig
from .datasets import DATASETS, load_dataset
from .models import MODELS, build_model
from .protocol import SettingsMismatchError, run_protocol
from .store import atomic_write
from .summary import summary_markdown

__all__ = ["PRESETS", "build_parser", "main"]

#: Per-data-set defaults of the settings left unset on the command line. The image data sets
#: use the authors' values; MNIST-1D those of the embedded default run (see the docs).
PRESETS: dict[str, dict[str, Any]] = {
    "mnist1d": {
        "model": "mlp",
        "width": 256,
        "depth": 3,
        "mlp_bn": False,
        "chunks": 10,
        "lr": 0.01,
        "max_epochs": 300,
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
        raise argparse.ArgumentTypeError(f"seeds must be integers >= 0; got {text!r}")
    return seeds


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
    g.add_argument("--data-dir", type=Path, help="folder of the image data sets (never downloaded)")
    g.add_argument("--train-size", type=int, help="use a random subset of the training set (svhn: 50000)")
    g.add_argument("--model", choices=MODELS, help="default: mlp for mnist1d, resnet18 for images")
    g.add_argument("--width", type=int, help="MLP width (mnist1d: 256, images: 1000 as the authors)")
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
    g.add_argument("--lr", type=float, help="learning rate (mnist1d: 0.01, images: 0.001)")
    g.add_argument("--momentum", type=float, default=d.momentum)
    g.add_argument("--weight-decay", type=float, default=d.weight_decay)
    g.add_argument("--batch-size", type=int, default=d.batch_size)
    g.add_argument("--test-batch-size", type=int, default=d.test_batch_size)
    g.add_argument(
        "--threshold", type=float, default=d.threshold, help="train accuracy that ends an experiment"
    )
    g.add_argument("--max-epochs", type=int, help="epoch cap per experiment (mnist1d: 300, images: 10000)")
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
        default=list(METHODS),
        help=f"comma-separated, default all: {','.join(METHODS)}",
    )
    g.add_argument(
        "--optimizers",
        type=_names(OPTIMIZERS, "optimizer"),
        default=["sgd"],
        help="comma-separated: sgd, sam or sgd,sam (default sgd)",
    )
    seeds = g.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, help="one seed (default 0)")
    seeds.add_argument("--seeds", type=_seeds, help="comma-separated seeds, e.g. 0,1,2")
    g = p.add_argument_group("output and hardware")
    g.add_argument("--out", type=Path, default=Path("warmstart-results"), help="output folder")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    g.add_argument("--workers", type=int, default=0, help="DataLoader workers (image folders)")
    g.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: fastest for small models and on shared machines)",
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the harness from command-line arguments; return the exit status.

    Examples
    --------
    >>> main(["--chunks", "1"])
    Traceback (most recent call last):
    ...
    SystemExit: 2
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    preset = PRESETS[args.dataset]
    for key in ("model", "width", "depth", "mlp_bn", "chunks", "lr", "max_epochs", "l2_init", "train_size"):
        if getattr(args, key) is None:
            setattr(args, key, preset[key])
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
        parser.error(str(err).replace("num_chunks=", "--chunks ").replace("_", "-"))
    for name in ("width", "depth", "workers"):
        if getattr(args, name) < (0 if name == "workers" else 1):
            parser.error(f"--{name} {getattr(args, name)} must be >= {0 if name == 'workers' else 1}")
    if args.threads < 1:
        parser.error(f"--threads {args.threads} must be >= 1")
    torch.set_num_threads(args.threads)
    device = _device(parser, args.device)
    seeds = args.seeds if args.seeds is not None else [args.seed if args.seed is not None else 0]
    if any(s < 0 for s in seeds):
        parser.error(f"--seed {seeds[0]} must be >= 0")
    if args.dataset != "mnist1d" and args.data_dir is None:
        parser.error(
            f"--dataset {args.dataset} is read from a local folder: pass --data-dir DIR "
            "(nothing is downloaded)"
        )
    try:
        data = load_dataset(args.dataset, args.data_dir, train_size=args.train_size)
        factory = build_model(
            args.model,
            data.input_shape,
            data.num_classes,
            width=args.width,
            depth=args.depth,
            batch_norm=args.mlp_bn,
        )
    except (ValueError, FileNotFoundError, ImportError) as err:
        parser.error(str(err))
    setup = {"dataset": args.dataset, "train_size": args.train_size, "model": args.model}
    if args.model == "mlp":
        setup.update(width=args.width, depth=args.depth, mlp_bn=args.mlp_bn)
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
        )
    except (FileExistsError, SettingsMismatchError) as err:
        parser.error(str(err))
    except KeyboardInterrupt:
        print(
            f"\ninterrupted; finished experiments are saved in {args.out}. Continue with the same "
            "command plus --resume.",
            file=sys.stderr,
        )
        return 130
    elapsed = time.perf_counter() - start
    table = summary_markdown(records)
    command = "dash-warmstart " + " ".join(sys.argv[1:] if argv is None else argv)
    text = (
        f"# Warm-start protocol: {args.dataset}, {args.model}, {config.num_chunks} chunks\n\n"
        f"Command: `{command.strip()}`  \nWall time of this invocation: {elapsed:.0f} s; time of all "
        f"experiments (resumed ones included): {sum(r['seconds'] for r in records):.0f} s\n\n{table}\n"
    )
    atomic_write(args.out / "summary.md", text)
    print(table)
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
        f"\nresults in {args.out}/ (summary.md, experiments.csv, experiments.json"
        f"{'' if args.no_plot else ', plot.png'}); {elapsed:.0f} s"
    )
    return 0
