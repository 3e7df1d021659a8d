#!/usr/bin/env python3
"""One exploration run on the ``features`` data set and the ``patchcnn``: a JSON line per run.

This is the driver that produced ``results/exploration-features/runs.jsonl``, the runs that
chose ``dash-warmstart``'s default setting (docs/experiments.rst, "How the default was
chosen"). Each call trains every method of ``--methods`` on every seed of ``--seeds`` under the
given settings, prints a short summary, and appends one JSON object to ``--out``:

* ``tag`` and ``args`` (every flag below, as parsed);
* ``last``: per method, the test accuracy (%) at the last experiment, one per seed;
* ``steps``: per method, the training steps of the last experiment, one per seed;
* ``capped``: every ``[method, seed, experiment]`` that ended below the train-accuracy
  threshold (at the epoch cap);
* ``wall`` and ``cpu``: wall time and summed CPU time of the experiments, in seconds.

Regenerate a line of the committed file (its tag and settings are in the line), e.g. the
chosen default on seeds 0-4, from the repository root::

    python scripts/explore_features.py --tag pd128-ns1.0-s04 --seeds 0,1,2,3,4 \\
        --patch-dim 128 --noise-std 1.0 --out results/exploration-features/runs.jsonl

The table in the docs is ``torch_dash_optim.experiments.publish_exploration.exploration`` of that file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from torch_dash_optim.experiments.config import ProtocolConfig
from torch_dash_optim.experiments.features import FeatureSpec, make_features
from torch_dash_optim.experiments.models import build_model
from torch_dash_optim.experiments.protocol import run_protocol

_INT_SPEC = ("num_train", "num_test", "rare", "patches", "patch_dim")
_FLOAT_SPEC = ("rare_freq", "feature_strength", "noise_std")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The run's settings; the data set's default to :class:`FeatureSpec`'s."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tag", required=True, help="the run's name in the output file")
    p.add_argument("--out", required=True, type=Path, help="the JSON-lines file to append the run to")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--methods", default="cold,warm,sp,fire,dash", help="comma-separated methods")
    p.add_argument("--chunks", type=int, default=10)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--max-epochs", type=int, default=300)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--jobs", type=int, default=2, help="worker processes (the results do not depend on it)")
    p.add_argument("--batch", type=int, default=128)
    defaults = FeatureSpec()
    for name in _INT_SPEC:
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(defaults, name))
    for name in _FLOAT_SPEC:
        p.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(defaults, name))
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train every method on every seed; return the JSON object of the run."""
    spec = FeatureSpec(**{name: getattr(args, name) for name in (*_INT_SPEC, *_FLOAT_SPEC)})
    data = make_features(spec)
    factory = build_model("patchcnn", (spec.input_length,), spec.classes, width=args.width, patch_dim=spec.patch_dim)
    config = ProtocolConfig(num_chunks=args.chunks, lr=args.lr, max_epochs=args.max_epochs, batch_size=args.batch)
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = args.methods.split(",")
    start = time.perf_counter()
    records = run_protocol(data.train, data.test, factory, config=config, methods=methods, seeds=seeds,
                           progress=False, jobs=args.jobs)
    wall = time.perf_counter() - start
    last = {(r["method"], r["seed"]): r for r in records if r["experiment"] == args.chunks}
    capped = sorted({(r["method"], r["seed"], r["experiment"]) for r in records if r["train_acc"] < config.threshold})
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    return {
        "tag": args.tag,
        "args": settings,
        "wall": round(wall),
        "cpu": round(sum(r["cpu_seconds"] for r in records)),
        "last": {m: [round(100 * last[(m, s)]["test_acc"], 2) for s in seeds] for m in methods},
        "steps": {m: [last[(m, s)]["steps"] for s in seeds] for m in methods},
        "capped": [list(c) for c in capped],
    }


def summary(out: dict[str, Any]) -> str:
    """A few lines for the terminal: accuracies per method, cold − warm, DASH − each other method."""
    lines = [f"{out['tag']}: wall {out['wall']} s, CPU {out['cpu']} s"]
    last = out["last"]
    for m, accs in last.items():
        lines.append(f"  {m:8s} acc {accs} mean {statistics.fmean(accs):.2f}  steps {out['steps'][m]}")
    pairs = [("cold", "warm")] + [("dash", m) for m in last if m != "dash"]
    for a, b in pairs:
        if a in last and b in last:
            d = [x - y for x, y in zip(last[a], last[b], strict=True)]
            positive = sum(x > 0 for x in d)
            lines.append(f"  {a} − {b}: mean {statistics.fmean(d):+.2f}, positive on {positive} of {len(d)}")
    lines.append(f"  capped (method, seed, experiment): {len(out['capped'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run, print the summary, and append the run to ``--out``."""
    args = parse_args(argv)
    out = run(args)
    print(summary(out))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
