"""The command line, ``python -m torch_dash_optim.experiments.text``: parse, run, write the results folder.

:func:`~torch_dash_optim.experiments.text.main` writes ``records.csv``/``records.json``,
``splits.json``, ``config.json``, ``summary.md``, ``summary.json``, ``provenance.json`` and
``text-results.png`` (see :mod:`torch_dash_optim.experiments.text`).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from ..config import seeds_argument
from ..provenance import add_invocation
from ..store import atomic_write
from .compare import compare_last
from .corpus import draw_split, read_corpus
from .figure import figure_title, plot_text
from .protocol import RECORD_FIELDS, run_text
from .settings import _DEFAULT_SEEDS, _QUICK_SEEDS, METHODS, QUICK, TextConfig
from .tables import stage_table, summary_markdown

__all__ = ["SMOKE_NOTE", "build_parser", "main"]

#: What ``--quick`` prints and writes at the top of ``summary.md``.
SMOKE_NOTE = (
    "SMOKE RUN (--quick): a tiny model on a few KiB of text, to check that everything works. Its "
    "numbers are not evidence about any method; run without --quick for that."
)


def _csv(records: Sequence[dict[str, Any]]) -> str:
    """The records as ``records.csv``: the columns of ``RECORD_FIELDS``, one row per record."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RECORD_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: r.get(k) for k in RECORD_FIELDS} for r in records)
    return buffer.getvalue()


def _methods_arg(text: str) -> list[str]:
    """``--methods``: distinct names of ``METHODS``, comma-separated."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in METHODS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown method {', '.join(bad) or repr(text)}; use some of {','.join(METHODS)}"
        )
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"{text!r} names {', '.join(twice)} twice; give each method once")
    return names


# the settings that have a flag of their own (--chunks, --epochs...)
_OVERRIDES = ("chunks", "epochs", "train_bytes", "heldout_bytes", "context", "width", "layers", "lr")


def _cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m torch_dash_optim.experiments.text``.

    Examples
    --------
    >>> build_parser().parse_args(["--out", "x", "--seeds", "0,1,2"]).seeds
    [0, 1, 2]
    """
    d = TextConfig()
    p = argparse.ArgumentParser(
        prog="python -m torch_dash_optim.experiments.text",
        description="A small causal transformer trained as the standard library's source text arrives in chunks: "
        "cold, warm, Shrink & Perturb and DASH, held-out loss per stage, paired per-seed comparisons.",
    )
    p.add_argument("--out", type=Path, required=True, help="results folder")
    p.add_argument("--seeds", type=seeds_argument, help="comma-separated (default 0,1,2,3,4; --quick: 0,1)")
    p.add_argument("--methods", type=_methods_arg, default=list(METHODS), help=f"default {','.join(METHODS)}")
    p.add_argument("--quick", action="store_true", help="a smoke run of a few seconds; its numbers are not evidence")
    p.add_argument("--stdlib", type=Path, help="read the .py files of this folder instead of the standard library")
    g = p.add_argument_group("settings (defaults: the published run's)")
    for name in _OVERRIDES:
        g.add_argument(f"--{name.replace('_', '-')}", type=type(getattr(d, name)), help=f"default {getattr(d, name)}")
    p.add_argument("--jobs", type=int, help="worker processes, one (seed, method) run each (default: one per CPU core; "
                   "1 runs everything in this process); the numbers do not depend on it")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    p.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the text experiment from the command line; return the exit status.

    Parameters
    ----------
    argv:
        The arguments, without the program name; ``None`` reads ``sys.argv[1:]``.

    Returns
    -------
    int
        0 on success, 130 when interrupted (nothing is written then).

    Raises
    ------
    SystemExit
        With status 2 for a bad argument, naming it and the fix.

    Examples
    --------
    >>> import tempfile
    >>> main(["--quick", "--seeds", "0", "--methods", "warm,dash", "--jobs", "1", "--no-plot",
    ...       "--out", tempfile.mkdtemp()])  # doctest: +ELLIPSIS
    # A causal transformer on the standard library's source, 2 chunks
    ...
    0
    >>> main(["--out", tempfile.mkdtemp(), "--chunks", "0"])
    Traceback (most recent call last):
    ...
    SystemExit: 2
    """
    parser = build_parser()
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(raw)
    base = QUICK if args.quick else TextConfig()
    given = {k: getattr(args, k) for k in _OVERRIDES if getattr(args, k) is not None}
    try:
        config = replace(base, **given)
    except (TypeError, ValueError) as err:
        parser.error(str(err))
    seeds = args.seeds or list(_QUICK_SEEDS if args.quick else _DEFAULT_SEEDS)
    if args.jobs is None:
        args.jobs = min(_cores(), len(seeds) * len(args.methods))
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs} must be >= 1 (1 runs everything in this process)")
    if args.threads < 1:
        parser.error(f"--threads {args.threads} must be >= 1")
    out: Path = args.out
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} is a file, not a folder; choose a folder path")
    if (out / "records.json").exists() and not args.overwrite:
        parser.error(f"--out {out} already holds a text run (records.json); add --overwrite to replace it, or choose "
                     "another --out")
    try:
        corpus = read_corpus(args.stdlib)
        for s in seeds:
            draw_split(corpus, s, config)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))
    if args.quick:
        print(SMOKE_NOTE, file=sys.stderr)
    print(f"{len(seeds)} seeds x {len(args.methods)} methods x {config.chunks} stages on {corpus.total_bytes} bytes "
          f"of Python {corpus.python}'s standard library ({len(corpus.names)} files)", file=sys.stderr)
    start = time.perf_counter()
    try:
        records = run_text(config, seeds, args.methods, args.stdlib, jobs=args.jobs, threads=args.threads,
                           progress=True)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("\ninterrupted; nothing was written", file=sys.stderr)
        return 130
    wall = time.perf_counter() - start
    cpu = sum(r["cpu_seconds"] for r in records)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("provenance.json", "text-results.png"):
        (out / stale).unlink(missing_ok=True)
    command = " ".join(["python -m torch_dash_optim.experiments.text", *raw])
    setup = {"config": asdict(config), "seeds": seeds, "methods": list(args.methods), "quick": args.quick,
             "corpus": corpus.describe(), "optimizer": "AdamW", "tokens": "bytes"}
    atomic_write(out / "config.json", json.dumps(setup, indent=2, sort_keys=True) + "\n")
    atomic_write(out / "splits.json", json.dumps(
        {"corpus": corpus.describe(), "splits": [draw_split(corpus, s, config).describe() for s in seeds]},
        indent=1) + "\n")
    atomic_write(out / "records.csv", _csv(records))
    atomic_write(out / "records.json", json.dumps({**setup, "records": records}, indent=1) + "\n")
    comparisons = compare_last(records)
    summary = {
        "stages": stage_table(records),
        "last_stage": [c.to_dict() for c in comparisons],
        "warm_minus_cold": [c.to_dict() for c in compare_last(records, "warm", ["cold"])],
    }
    atomic_write(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    add_invocation(out, command, args.jobs, args.threads, wall, cpu)
    text = (
        f"# A causal transformer on the standard library's source, {config.chunks} chunks\n\n"
        + (f"**{SMOKE_NOTE}**\n\n" if args.quick else "")
        + f"Command: `{command}`  \nCorpus: Python {corpus.python}, {len(corpus.names)} files, "
        f"{corpus.total_bytes} bytes, sha256 {corpus.sha256[:16]}…  \nWall time: {wall:.0f} s ({args.jobs} job(s)); "
        f"CPU time of the runs: {cpu:.0f} s\n\n" + summary_markdown(records)
    )
    atomic_write(out / "summary.md", text)
    if not args.no_plot:
        try:
            plot_text(records, out / "text-results.png", title=figure_title(corpus.python, config.chunks, len(seeds)))
        except ImportError as err:
            print(f"no plot: {err}", file=sys.stderr)
    print(text)
    if args.quick:
        print(SMOKE_NOTE)
    return 0
