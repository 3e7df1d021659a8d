"""Command line: ``python -m benchmarks [--quick] [--out DIR] [--json PATH] [--markdown PATH] ...``."""

from __future__ import annotations

import argparse
import shlex
import sys

import torch

from .config import Config
from .runner import DEFAULT_SECTIONS, SECTIONS, run_all


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the benchmarks, print and write the results."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        epilog="The import time of the package beyond torch is measured on its own, in fresh interpreters: "
        "python -m benchmarks.bench_import --label after --out results/benchmarks-import",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 2 repeats: a smoke run")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 7, 2 with --quick)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: stable CPU-time ratios on a shared machine)",
    )
    parser.add_argument(
        "--sections",
        default=",".join(DEFAULT_SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)} (default: {','.join(DEFAULT_SECTIONS)})",
    )
    parser.add_argument("--no-rss", action="store_true", help="skip the subprocess RSS cross-check of memory")
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="write results.json, results.csv and results.md into DIR (e.g. results/benchmarks-cpu)",
    )
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="write the results as a markdown table")
    parser.add_argument("--rst", metavar="PATH", help="write the results as a reStructuredText list-table")
    args = parser.parse_args(argv)
    sections = tuple(s.strip() for s in args.sections.split(",") if s.strip())
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {unknown}; use some of {','.join(SECTIONS)}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda but torch.cuda.is_available() is False")
    torch.set_num_threads(args.threads)
    cfg = Config.make(args.quick, args.device, args.repeats)
    command = "python -m benchmarks " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    run = run_all(cfg, command.strip(), sections, rss=not args.no_rss)
    text = run.markdown()
    print(text)
    if args.out:
        run.write_folder(args.out)
    if args.json:
        with open(args.json, "w") as f:
            f.write(run.to_json())
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    if args.rst:
        with open(args.rst, "w") as f:
            f.write(run.rst())
    failed = [r for r in run.results if r.holds is False]
    if failed and not args.quick:
        print(f"{len(failed)} goal(s) do not hold: " + "; ".join(r.name for r in failed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
