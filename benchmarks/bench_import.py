"""What ``import torch_dash_optim`` costs beyond ``import torch``: wall time and modules loaded.

Usage (from the repository root)::

    python -m benchmarks.bench_import --label before --tree /tmp/head --out results/benchmarks-import
    python -m benchmarks.bench_import --label after --out results/benchmarks-import

Each run is a fresh interpreter that imports torch, then the package, timing both with
``time.perf_counter``: the figure is ``t(import torch; import torch_dash_optim) - t(import
torch)``, measured in the same process, so torch's own (and much larger, and noisier) import
time cancels out. The median over ``--runs`` interpreters is reported, after one warm-up run
whose time is dropped (cold file caches). The modules loaded beyond torch are those in
``sys.modules`` after the package's import and not after torch's: their count, and the
package's own modules among them by name.

``--tree`` is the source tree to measure (its package is imported through ``PYTHONPATH``;
default: this checkout), so a ``git worktree`` of an older commit measures that commit with
the same interpreter and torch. Each ``--label`` is one entry of ``import.json`` in ``--out``:
an entry of the same label is replaced, the others are kept, so ``before`` and ``after`` sit
side by side. A timing, not a test: nothing here asserts a figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["CHILD", "measure", "record", "summarize"]

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "torch_dash_optim"

#: The code of one timed interpreter: prints one JSON line.
CHILD = f"""
import json, sys, time
start = time.perf_counter()
import torch
after_torch = time.perf_counter()
loaded_by_torch = set(sys.modules)
import {PACKAGE}
end = time.perf_counter()
extra = sorted(set(sys.modules) - loaded_by_torch)
print(json.dumps({{
    "torch_s": after_torch - start,
    "package_s": end - after_torch,
    "file": {PACKAGE}.__file__,
    "modules": extra,
}}))
"""


def _child(python: str, tree: Path) -> dict[str, Any]:
    """One fresh interpreter that imports torch then the package from ``tree``; its JSON line."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(tree)
    result = subprocess.run(
        [python, "-c", CHILD], cwd=tree, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"the timed import failed in {tree}:\n{result.stderr}")
    data = json.loads(result.stdout.strip().splitlines()[-1])
    if not Path(data["file"]).resolve().is_relative_to(tree.resolve()):
        raise RuntimeError(
            f"{PACKAGE} was imported from {data['file']}, not from --tree {tree}; "
            "run from a checkout without another copy of the package ahead of PYTHONPATH"
        )
    return data


def summarize(seconds: list[float]) -> dict[str, Any]:
    """Median, quartiles, min and max of timings, in milliseconds (rounded to 0.01 ms).

    Examples
    --------
    >>> summarize([0.010, 0.012, 0.011, 0.030])["median_ms"]
    11.5
    """
    ms = sorted(1000 * s for s in seconds)
    q1, _, q3 = statistics.quantiles(ms, n=4) if len(ms) > 1 else (ms[0], ms[0], ms[0])
    return {
        "median_ms": round(statistics.median(ms), 2),
        "q1_ms": round(q1, 2),
        "q3_ms": round(q3, 2),
        "min_ms": round(ms[0], 2),
        "max_ms": round(ms[-1], 2),
        "all_ms": [round(x, 2) for x in ms],
    }


def _commit(tree: Path) -> str:
    """The tree's git commit, with ``+uncommitted`` when it has changes, or ``unknown``."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=tree, capture_output=True, text=True, timeout=30
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=tree, capture_output=True, text=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + ("+uncommitted" if head and dirty else "")


def measure(tree: Path = ROOT, runs: int = 15, python: str = sys.executable) -> dict[str, Any]:
    """Time ``import torch_dash_optim`` beyond ``import torch`` in ``runs`` fresh interpreters.

    Parameters
    ----------
    tree:
        The source tree whose package is imported (through ``PYTHONPATH``).
    runs:
        Timed interpreters (one more, first, is a warm-up whose time is dropped).
    python:
        The interpreter (default: this one, so the same torch).

    Returns
    -------
    dict
        ``package_import`` and ``torch_import`` (see :func:`summarize`), ``modules_beyond_torch``
        (count), ``package_modules`` (the package's modules loaded, by name) and
        ``other_modules`` (the count of the others: standard library and third-party ones).
    """
    if runs < 1:
        raise ValueError(f"runs={runs} must be >= 1")
    _child(python, tree)  # warm-up: cold file caches
    children = [_child(python, tree) for _ in range(runs)]
    modules = children[-1]["modules"]
    package = [m for m in modules if m == PACKAGE or m.startswith(PACKAGE + ".")]
    return {
        "package_import": summarize([c["package_s"] for c in children]),
        "torch_import": summarize([c["torch_s"] for c in children]),
        "modules_beyond_torch": len(modules),
        "package_modules": package,
        "other_modules": len(modules) - len(package),
        "runs": runs,
    }


def record(path: Path, label: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Write ``entry`` under ``label`` into the JSON file ``path``, keeping the other labels; return it all.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "import.json"
    >>> _ = record(path, "before", {"x": 1})
    >>> sorted(record(path, "after", {"x": 2})["entries"])
    ['after', 'before']
    """
    data: dict[str, Any] = {"benchmark": "python -m benchmarks.bench_import", "entries": {}}
    if path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))
    data["entries"][label] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return data


def _line(label: str, entry: dict[str, Any]) -> str:
    """One entry as a line of text."""
    p = entry["package_import"]
    return (
        f"{label}: import {PACKAGE} beyond torch {p['median_ms']:.1f} ms (median of {entry['runs']}; "
        f"quartiles {p['q1_ms']:.1f}-{p['q3_ms']:.1f}), {entry['modules_beyond_torch']} modules beyond torch "
        f"({len(entry['package_modules'])} of the package); torch itself {entry['torch_import']['median_ms']:.0f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, measure, print the figures, and record them under ``--label``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_import", description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=ROOT, help="source tree to measure (default: this checkout)")
    parser.add_argument("--label", help="name of the entry in import.json, e.g. before or after (needed with --out)")
    parser.add_argument("--runs", type=int, default=15, help="timed interpreters (default 15; 3 with --quick)")
    parser.add_argument("--quick", action="store_true", help="3 runs: a smoke run")
    parser.add_argument("--out", type=Path, help="folder of import.json (e.g. results/benchmarks-import)")
    args = parser.parse_args(argv)
    runs = 3 if args.quick and args.runs == 15 else args.runs
    if runs < 1:
        parser.error(f"--runs {runs} must be >= 1")
    if args.out and not args.label:
        parser.error("--out records an entry: name it with --label, e.g. --label after")
    if not (args.tree / PACKAGE / "__init__.py").is_file():
        parser.error(f"--tree {args.tree} holds no {PACKAGE}/__init__.py; give a checkout of the repository")
    from .results import machine

    start = time.perf_counter()
    entry = measure(args.tree, runs)
    argv_text = " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    info = machine()
    info["commit"] = _commit(args.tree)
    entry = {
        "command": f"python -m benchmarks.bench_import {argv_text}".strip(),
        "date": time.strftime("%Y-%m-%d"),
        "machine": info,
        "seconds": round(time.perf_counter() - start, 1),
        **entry,
    }
    print(_line(args.label or str(args.tree), entry))
    print("package modules loaded: " + ", ".join(entry["package_modules"]))
    if args.out:
        data = record(args.out / "import.json", args.label, entry)
        for label, other in data["entries"].items():
            if label != args.label:
                print(_line(label, other))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
