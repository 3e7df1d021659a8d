"""Command line of the harness: ``dash-warmstart`` or ``python -m torch_dash_optim.experiments``.

With no arguments it runs the embedded default (the data set, model and seeds of
:mod:`.config`'s presets), in parallel worker processes (``--jobs``), prints the mean ± std
table and the verdicts of :mod:`.stats` (DASH against each other method, paired by seed,
with 95% intervals), and writes them to ``summary.md``. ``--quick`` is a smoke run of a few
minutes' worth of the same: it checks that everything runs, and says that its numbers are
not evidence. Every setting can be overridden; see ``--help``. Every bad argument ends in a
one-line message that names the fix, with exit status 2; an interrupted run (Ctrl-C) exits
with status 130 and keeps what finished, for ``--resume``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .checks import check_device, check_protocol
from .config import (
    DATASET_PRESETS,
    DEFAULT_DATASET,
    DEFAULT_METHODS,
    DEFAULT_SEEDS,
    MODEL_PRESETS,
    MODEL_WIDTHS,
    OPTIMIZERS,
    PAPER_DATASETS,
    QUICK_PRESET,
    ProtocolConfig,
    seeds_argument,
)
from .datasets import _MNIST_SCRIPT, DATASETS, GENERATED_DATASETS, DataSource, dataset_setup
from .methods import BUILTIN
from .models import MODELS, build_model
from .protocol import DIAGNOSTIC_TAU, OutputExistsError, SettingsMismatchError, run_protocol
from .provenance import add_invocation
from .stats import compare, verdict_lines, verdicts_markdown
from .store import CorruptRunError, atomic_write, read_config
from .summary import diagnostics_markdown, factor_markdown, steps_markdown, summary_markdown

__all__ = ["SMOKE_NOTE", "build_parser", "main"]

#: What ``--quick`` prints and writes at the top of ``summary.md``.
SMOKE_NOTE = (
    "SMOKE RUN (--quick): a few small runs that check that everything works. Its numbers are not "
    "evidence about any method; run without --quick for that."
)

_PRESET_KEYS = ("model", "depth", "mlp_bn", "chunks", "lr", "max_epochs", "l2_init", "train_size")


def _twice(items: Sequence[Any]) -> list[Any]:
    """The items that occur more than once, sorted."""
    return sorted({x for x in items if list(items).count(x) > 1}, key=str)


def _names(known: Sequence[str], what: str) -> Any:
    """An argparse ``type`` for a comma-separated list of ``known`` names (or ``all``), each once."""
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


def _kernels(text: str) -> list[int]:
    """The argparse ``type`` of ``--kernels``: sizes >= 1."""
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
        if arg in ("--seed", "--seeds", "--data-seed", "--lr", "--momentum", "--weight-decay", "--rho", "--threshold"):
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
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _by_dataset(key: str) -> str:
    """The presets' values of one setting, e.g. ``features: 10, mnist1d: 10, images: 50``."""
    values: dict[str, Any] = {}
    for name, preset in DATASET_PRESETS.items():
        label = "images" if name in PAPER_DATASETS else name
        values.setdefault(label, preset.get(key))
    extra = [
        f"{value} with --model {model} on {dataset}"
        for (dataset, model), preset in MODEL_PRESETS.items()
        for k, value in preset.items()
        if k == key
    ]
    return ", ".join([f"{label}: {value}" for label, value in values.items()] + extra)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser (defaults of ``None`` come from :data:`.config.DATASET_PRESETS`).

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
        "--dataset",
        default=DEFAULT_DATASET,
        choices=DATASETS,
        help=f"default: {DEFAULT_DATASET} ({', '.join(GENERATED_DATASETS)}: generated locally)",
    )
    g.add_argument(
        "--data-dir",
        type=Path,
        help="folder of mnist and the image data sets (never downloaded; for mnist, write one with "
        f"{_MNIST_SCRIPT}; not for {', '.join(GENERATED_DATASETS)})",
    )
    g.add_argument(
        "--train-size",
        type=int,
        help="use a random subset of the training set (svhn: 50000; mnist: a stratified pool, "
        f"{DATASET_PRESETS['mnist']['train_size']})",
    )
    g.add_argument(
        "--data-seed",
        type=int,
        help="draw the data of every seed from this data seed (default: each seed draws its own data: "
        "seed s trains and is tested on the draw of data seed s)",
    )
    g.add_argument("--model", choices=MODELS, help=f"default: {_by_dataset('model')}")
    g.add_argument(
        "--width",
        type=int,
        help="channels of the conv models, units of the MLP (default: "
        + ", ".join(f"{m} {w}" for m, w in MODEL_WIDTHS.items())
        + "".join(
            f"; {p['width']} with --model {m} on {d}" for (d, m), p in MODEL_PRESETS.items() if "width" in p
        )
        + ")",
    )
    g.add_argument(
        "--kernels", type=_kernels, help="cnn1d kernel sizes, one conv layer each (default 5,3,3)"
    )
    g.add_argument(
        "--depth", type=int, help=f"MLP Linear layers ({_by_dataset('depth')})"
    )
    g.add_argument(
        "--mlp-bn",
        action=argparse.BooleanOptionalAction,
        help=f"BatchNorm after each hidden MLP layer ({_by_dataset('mlp_bn')})",
    )
    g = p.add_argument_group("protocol (defaults: the authors' unless the data set's preset says otherwise)")
    g.add_argument("--chunks", type=int, help=f"K, number of chunks ({_by_dataset('chunks')})")
    g.add_argument(
        "--lr", type=float, help=f"learning rate ({_by_dataset('lr')})"
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
        help=f"epoch cap per experiment ({_by_dataset('max_epochs')})",
    )
    g.add_argument("--rho", type=float, default=d.rho, help="SAM radius (default 0.1)")
    g.add_argument("--dash-lambd", type=float, default=d.dash_lambd)
    g.add_argument("--dash-alpha", type=float, default=d.dash_alpha)
    g.add_argument("--sp-shrink", type=float, default=d.sp_shrink, help="Shrink & Perturb factor")
    g.add_argument("--sp-sigma", type=float, default=d.sp_sigma, help="Shrink & Perturb noise std")
    g.add_argument(
        "--fire-alpha",
        type=float,
        default=d.fire_alpha,
        help="FIRE's mixing weight a in (0, 1]: the weights become (1 - a) W + a FIRE(W) (default 1: FIRE itself)",
    )
    g.add_argument(
        "--uniform-factor",
        type=float,
        help="the factor of the uniform_global control, in (0, 1] (default: DASH's mean factor at each stage)",
    )
    g.add_argument(
        "--l2-init", type=float, help=f"L2-init strength ({_by_dataset('l2_init')})"
    )
    g = p.add_argument_group("what to run")
    g.add_argument(
        "--methods",
        type=_names(tuple(BUILTIN), "method"),
        help=f"comma-separated, some of {', '.join(BUILTIN)}, or all (default: {', '.join(DEFAULT_METHODS)})",
    )
    g.add_argument(
        "--optimizers",
        type=_names(OPTIMIZERS, "optimizer"),
        default=["sgd"],
        help="comma-separated: sgd, sam or sgd,sam (default sgd)",
    )
    seeds = g.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, help="one seed")
    seeds.add_argument(
        "--seeds", type=seeds_argument, help=f"comma-separated seeds (default {','.join(map(str, DEFAULT_SEEDS))})"
    )
    g.add_argument(
        "--quick",
        action="store_true",
        help="smoke run, its numbers are not evidence: "
        + ", ".join(
            f"--{k.replace('_', '-')} {','.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
            for k, v in QUICK_PRESET.items()
        )
        + " unless given",
    )
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
    g.add_argument(
        "--no-diagnostics",
        action="store_true",
        help="skip the plasticity diagnostics after each experiment (dormant share, feature rank; a few %% of "
        "the time)",
    )
    g.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    return p


def _device(parser: argparse.ArgumentParser, text: str) -> torch.device:
    """The ``--device``; one that is not a device, or that torch cannot run on here, exits 2 (``check_device``)."""
    try:
        torch.device(text)
    except (RuntimeError, ValueError):
        parser.error(f"--device {text!r} is not a device; use cpu, cuda or cuda:N")
    try:
        return check_device(text)
    except ValueError as err:  # check_device's message, in the command line's words
        parser.error(_as_flag(str(err)))


def _as_flag(message: str) -> str:
    """``device='mps' ...; use cpu`` as the command line says it: ``--device mps ...; use --device cpu``."""
    return re.sub(r"^device='([^']*)'", r"--device \1", message).replace("; use cpu", "; use --device cpu")


def _check_out(parser: argparse.ArgumentParser, out: Path, resume: bool) -> None:
    """Refuse, in one line, an ``--out`` that cannot be a results folder (creates nothing)."""
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} is a file, not a folder; choose a folder path, e.g. --out warmstart-results")
    try:
        saved = read_config(out)
    except CorruptRunError as err:
        parser.error(str(err))
    if resume and saved is None:
        parser.error(f"--resume: {out} holds no run to continue (no config.json); drop --resume to start one there")


def _make_out(parser: argparse.ArgumentParser, out: Path) -> None:
    """Create ``--out`` and check that it can be written; refuse in one line if not."""
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
    try:
        return _main(argv)
    except KeyboardInterrupt:  # outside the runs (data, model, the summary): nothing half-written to keep
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt this message
        print("\ninterrupted; run the same command again (with --resume if --out was created)", file=sys.stderr)
        return 130


@dataclass(frozen=True)
class _Command:
    """One invocation's settings, parsed and checked: the arguments with the presets filled in."""

    args: argparse.Namespace
    raw: list[str]
    config: ProtocolConfig
    device: torch.device
    seeds: list[int]
    kernels: list[int]

    @property
    def runs(self) -> int:
        """The number of (seed, optimizer, method) runs asked for."""
        return len(self.seeds) * len(self.args.optimizers) * len(self.args.methods)


def _main(argv: Sequence[str] | None) -> int:
    """The command's steps, in order; each refusal exits 2 through ``parser.error``, naming the fix."""
    parser = build_parser()
    command = _parse(parser, list(sys.argv[1:] if argv is None else argv))
    out = command.args.out
    _check_out(parser, out, command.args.resume)
    torch.set_num_threads(command.args.threads)
    # everything that can be checked is checked before --out is created: a bad setting leaves nothing
    data, factory = _data_and_model(parser, command)
    _check_inputs(parser, command, data, factory)
    _make_out(parser, out)
    jobs = _jobs(command)
    if command.args.quick:
        print(SMOKE_NOTE, file=sys.stderr)
    start = time.perf_counter()
    if not _run(parser, command, data, factory, jobs):
        return 130
    elapsed = time.perf_counter() - start
    # the summary covers the whole folder: runs of other methods or seeds kept by --resume too
    records = json.loads((out / "experiments.json").read_text(encoding="utf-8"))["records"]
    table, factors = _write_summary(command, records, jobs, elapsed)
    _print_results(command, records, table, factors, elapsed)
    return 0


def _parse(parser: argparse.ArgumentParser, raw: list[str]) -> _Command:
    """Parse ``raw``, fill the unset settings from the presets and check them all (exits 2 if bad)."""
    args = parser.parse_args(_negative_values(raw))
    quick = dict(QUICK_PRESET) if args.quick else {}
    preset = _fill_presets(args, quick)
    if args.kernels is not None and args.model != "cnn1d":
        parser.error(f"--kernels is a setting of --model cnn1d, not {args.model}; drop --kernels")
    if args.methods is None:
        args.methods = list(quick.get("methods", DEFAULT_METHODS))
    config = _protocol_config(parser, args)
    _check_counts(parser, args)
    device = _device(parser, args.device)
    seeds = _seeds_of(parser, args, quick, preset)
    if args.data_seed is not None and args.data_seed < 0:
        parser.error(f"--data-seed {args.data_seed} must be >= 0 (or left out: each seed draws its own data)")
    _check_data_dir(parser, args)
    return _Command(args, raw, config, device, seeds, args.kernels or [5, 3, 3])


def _fill_presets(args: argparse.Namespace, quick: dict[str, Any]) -> dict[str, Any]:
    """Set the model, protocol and size settings left unset from the presets; return the preset used."""
    if args.model is None:
        args.model = quick.get("model", DATASET_PRESETS[args.dataset]["model"])
    preset = {**DATASET_PRESETS[args.dataset], **MODEL_PRESETS.get((args.dataset, args.model), {}), **quick}
    for key in _PRESET_KEYS:
        if getattr(args, key) is None:
            setattr(args, key, preset[key])
    if args.width is None:
        args.width = (preset.get("width") or MODEL_WIDTHS[args.model]) if args.model in MODEL_WIDTHS else 0
    return preset


def _protocol_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> ProtocolConfig:
    """The protocol's settings; a value ``ProtocolConfig`` refuses is named as its flag."""
    try:
        return ProtocolConfig(
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
            fire_alpha=args.fire_alpha,
            uniform_factor=args.uniform_factor,
        )
    except ValueError as err:
        parser.error(_config_error(str(err)))


def _check_counts(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse a model size, worker, thread or job count out of range."""
    for name in ("depth", "workers"):
        if getattr(args, name) < (0 if name == "workers" else 1):
            parser.error(f"--{name} {getattr(args, name)} must be >= {0 if name == 'workers' else 1}")
    if args.model in MODEL_WIDTHS and args.width < 1:
        parser.error(f"--width {args.width} must be >= 1")
    if args.threads < 1:
        parser.error(f"--threads {args.threads} must be >= 1")
    if args.jobs is not None and args.jobs < 1:
        parser.error(f"--jobs {args.jobs} must be >= 1 (1 runs everything in this process)")


def _seeds_of(
    parser: argparse.ArgumentParser, args: argparse.Namespace, quick: dict[str, Any], preset: dict[str, Any]
) -> list[int]:
    """The seeds: ``--seeds``, ``--seed``, else the quick run's or the preset's."""
    if args.seeds is not None:
        seeds = args.seeds
    elif args.seed is not None:
        seeds = [args.seed]
    else:
        seeds = list(quick.get("seeds", preset.get("seeds", DEFAULT_SEEDS)))
    if any(s < 0 for s in seeds):
        parser.error(f"--seed {seeds[0]} must be >= 0")
    return seeds


def _check_data_dir(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse ``--data-dir`` for a generated data set, and its absence for an image one."""
    if args.dataset in GENERATED_DATASETS and args.data_dir is not None:
        parser.error(f"--data-dir is for the image data sets; {args.dataset} is generated locally: drop --data-dir")
    if args.dataset not in GENERATED_DATASETS and args.data_dir is None:
        hint = f"; write one with {_MNIST_SCRIPT}" if args.dataset == "mnist" else ""
        parser.error(
            f"--dataset {args.dataset} is read from a local folder: pass --data-dir DIR "
            f"(nothing is downloaded){hint}"
        )


def _data_and_model(parser: argparse.ArgumentParser, command: _Command) -> tuple[DataSource, Any]:
    """The data source (a draw per seed) and the model factory; a missing or bad data set exits 2, naming it."""
    args = command.args
    source = DataSource(args.dataset, args.data_dir, args.train_size)
    try:
        data = source.split(command.seeds[0] if args.data_seed is None else args.data_seed)  # shapes, and errors
        extra = {"patch_dim": data.patch_dim} if data.patch_dim is not None else {}
        factory = build_model(
            args.model,
            data.input_shape,
            data.num_classes,
            width=args.width,
            depth=args.depth,
            batch_norm=args.mlp_bn,
            kernels=command.kernels,
            **extra,
        )
    except (ValueError, FileNotFoundError, ImportError) as err:
        parser.error(str(err))
    return source, factory


def _check_inputs(parser: argparse.ArgumentParser, command: _Command, source: DataSource, factory: Any) -> None:
    """``check_protocol`` on the first seed's data (chunk sizes, the model on its smallest batch...): exits 2 if bad."""
    args = command.args
    try:
        check_protocol(
            model_factory=factory,
            data=source,
            data_seed=args.data_seed,
            config=command.config,
            seeds=command.seeds,
            device=command.device,
            diagnostics=not args.no_diagnostics,
        )
    except (ValueError, TypeError) as err:
        parser.error(str(err))


def _setup(command: _Command) -> dict[str, Any]:
    """What describes the data and model in ``config.json`` (checked on ``--resume``)."""
    args = command.args
    setup: dict[str, Any] = {"dataset": args.dataset, "train_size": args.train_size, "model": args.model}
    setup.update(dataset_setup(args.dataset, args.data_dir))
    if args.model == "mlp":
        setup.update(width=args.width, depth=args.depth, mlp_bn=args.mlp_bn)
    elif args.model == "cnn1d":
        setup.update(width=args.width, kernels=list(command.kernels))
    elif args.model in MODEL_WIDTHS:
        setup.update(width=args.width)
    return setup


def _jobs(command: _Command) -> int:
    """Worker processes: ``--jobs``, else one per core (or visible GPU), never more than the runs."""
    args, device = command.args, command.device
    if args.jobs is not None:
        jobs = args.jobs
    elif device.type == "cuda":
        jobs = torch.cuda.device_count() if device.index is None else 1
    else:
        jobs = _cores()
    return max(1, min(jobs, command.runs))


def _run(parser: argparse.ArgumentParser, command: _Command, data: DataSource, factory: Any, jobs: int) -> bool:
    """Run the protocol into ``--out``; ``False`` when Ctrl-C stopped it (what finished is kept)."""
    args = command.args
    try:
        run_protocol(
            model_factory=factory,
            data=data,
            data_seed=args.data_seed,
            config=command.config,
            methods=args.methods,
            optimizers=args.optimizers,
            seeds=command.seeds,
            out=args.out,
            resume=args.resume,
            device=command.device,
            workers=args.workers,
            progress=not args.no_progress,
            setup=_setup(command),
            jobs=jobs,
            threads=args.threads,
            diagnostics=not args.no_diagnostics,
        )
    except OutputExistsError:
        parser.error(
            f"--out {args.out} already holds results; add --resume to continue that run, or choose another --out"
        )
    except SettingsMismatchError as err:
        parser.error(str(err).replace("or a new --out", "or another --out"))
    except (CorruptRunError, ValueError, TypeError) as err:  # run_protocol's own checks, before it writes
        parser.error(str(err))
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt this message
        print(
            f"\ninterrupted; finished experiments are saved in {args.out}. Continue with the same "
            "command plus --resume.",
            file=sys.stderr,
        )
        return False
    return True


def _write_summary(command: _Command, records: list[dict[str, Any]], jobs: int, elapsed: float) -> tuple[str, str]:
    """Record the invocation and write ``summary.md``; return its table and factor table."""
    args, config = command.args, command.config
    table = summary_markdown(records, config.max_epochs, config.threshold)
    verdicts = verdicts_markdown(records, "dash", config.max_epochs, config.threshold)
    factors = factor_markdown(records)
    steps = steps_markdown(records, config.batch_size)
    plasticity = diagnostics_markdown(records, DIAGNOSTIC_TAU)
    line = " ".join(["dash-warmstart", *command.raw])
    cpu = sum(r.get("cpu_seconds") or 0.0 for r in records)
    add_invocation(args.out, line, jobs, args.threads, elapsed, cpu)
    text = (
        f"# Warm-start protocol: {args.dataset}, {args.model}, {config.num_chunks} chunks\n\n"
        + (f"**{SMOKE_NOTE}**\n\n" if args.quick else "")
        + f"Command: `{line}`  \nWall time of this invocation: {elapsed:.0f} s ({jobs} job(s)); CPU time of "
        f"all experiments (resumed ones included): {cpu:.0f} s\n\n{table}\n"
        + (f"\n## Who won: DASH against each method\n\n{verdicts}\n" if verdicts else "")
        + (f"\n## DASH's factors per layer kind\n\n{factors}\n" if factors else "")
        + (f"\n## Steps per experiment\n\n{steps}\n" if steps else "")
        + (f"\n## Plasticity after each experiment\n\n{plasticity}\n" if plasticity else "")
    )
    atomic_write(args.out / "summary.md", text)
    return table, factors


def _print_results(
    command: _Command, records: list[dict[str, Any]], table: str, factors: str, elapsed: float
) -> None:
    """Print the tables, draw the plot (unless ``--no-plot``), then print where and who won."""
    args, config = command.args, command.config
    print(table)
    if factors:
        print("\nDASH's factors per layer kind:\n" + factors)
    if not args.no_plot:
        _plot(command, records)
    print(
        f"\nresults in {args.out}/ (summary.md, experiments.csv, dash-factors.csv, experiments.json, "
        f"provenance.json{'' if args.no_plot else ', plot.png'}); {elapsed:.0f} s"
    )
    lines = verdict_lines(compare(records, "dash", config.max_epochs, config.threshold), config.max_epochs)
    if lines:
        print("\nWho won (DASH against each method, paired by seed, 95% t intervals):")
        print("\n".join(f"  {line}" for line in lines))
    if args.quick:
        print("\n" + SMOKE_NOTE)


def _plot(command: _Command, records: list[dict[str, Any]]) -> None:
    """Draw ``plot.png``; without matplotlib, say so on stderr and go on."""
    args, config = command.args, command.config
    try:
        from .plot import plot_results

        plot_results(
            records,
            args.out / "plot.png",
            title=f"{args.dataset}, {args.model}, {config.num_chunks} chunks",
            lambd=config.dash_lambd,
            max_epochs=config.max_epochs,
            threshold=config.threshold,
        )
    except ImportError as err:
        print(f"no plot: {err}", file=sys.stderr)
