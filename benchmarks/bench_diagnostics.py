"""The diagnostics pass against one forward pass (issue 26's budget: within 1.2x).

For each case of :mod:`benchmarks.models` (MLP, CIFAR ResNet-18, small transformer), timed side
by side (CPU time, one thread, interleaved, medians of paired ratios):

- *forward*: one forward pass over the case's loader in eval mode under ``torch.no_grad()``, the
  floor no diagnostics can go below;
- *pass*: the pass of :func:`~torch_dash_optim.diagnostics.diagnose` without cosines: the same
  forward with the hooks that sum ``|h|`` per input feature and keep the penultimate rows, and
  the saving and restoring of modes and buffers. Its ratio to the forward is the budget;
- *call*: ``diagnose(model, loader)`` as a user calls it: the pass, then the spectra of every
  weight and of the penultimate features (float64 Gram and ``eigvalsh``) and the scores;
- *hooked forward* (a control): the forward with a no-op forward pre-hook on every module the
  pass hooks. It shows what any hook costs by itself: PyTorch runs the fused eval path of
  ``nn.TransformerEncoderLayer`` only when none of its modules has a hook.

The work after the pass does not depend on the data: it is reported in milliseconds and as a
share of the forward pass, whose size is the loader's.

Run ``python -m benchmarks.bench_diagnostics [--quick] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

import torch

from torch_dash_optim import diagnostics as D

from .config import Config
from .models import CASES, Case, make_case
from .results import Result, Run, machine
from .timing import time_side_by_side

__all__ = ["TIME_GOAL", "main", "run"]

#: The budget of the pass, as a ratio to one forward pass.
TIME_GOAL = 1.2


def forward_pass(case: Case) -> None:
    """One forward pass per batch, in eval mode, without gradients."""
    model = case.model
    model.eval()
    with torch.no_grad():
        for inputs, _ in case.loader:
            model(inputs)


def hooked_forward(case: Case, modules: list[torch.nn.Module]) -> None:
    """:func:`forward_pass` with a no-op forward pre-hook on each of ``modules``."""
    handles = [m.register_forward_pre_hook(lambda module, args: None) for m in modules]
    try:
        forward_pass(case)
    finally:
        for h in handles:
            h.remove()


def _time_case(case: Case, cfg: Config, out: Run) -> None:
    model, loader = case.model, case.loader
    plan = D._plan(model, None, None, "kernel")
    hooked = list(plan.layers.values()) + [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1:]

    def the_pass() -> object:
        return D._run(plan, model, loader, False, None, None, 0.3, None, 2048)

    def setup() -> None:
        model.train()  # as in training: diagnose switches to eval mode and back

    methods = {
        "forward": lambda: forward_pass(case),
        "pass": the_pass,
        "call": lambda: D.diagnose(model, loader),
        "hooked": lambda: hooked_forward(case, hooked),
    }
    # Pairs, each interleaved on its own (as benchmarks.bench_gather does).
    budget = time_side_by_side({k: methods[k] for k in ("forward", "pass")}, cfg.repeats, cfg.warmup, cfg.device, setup)
    whole = time_side_by_side({k: methods[k] for k in ("forward", "call")}, cfg.repeats, 0, cfg.device, setup)
    control = time_side_by_side({k: methods[k] for k in ("forward", "hooked")}, cfg.repeats, 0, cfg.device, setup)
    recorder, _, batches = the_pass()
    after = time_side_by_side(
        {"after the pass": lambda: D._summarise(plan, recorder, [], batches, 0.0, 0.01)},
        cfg.repeats,
        cfg.warmup,
        cfg.device,
    )
    forward_s = budget.median("forward")
    ratio = budget.ratio("pass", "forward")
    call = whole.ratio("call", "forward")
    hook_cost = control.ratio("hooked", "forward")
    fixed_s = after.median("after the pass")
    samples = case.num_samples
    weights = sum(1 for t in plan.targets if t.param.ndim >= 2)
    label = f"{case.name} ({case.num_params / 1e6:.2f}M params, {samples} samples in {len(loader)} batches)"
    out.add(Result("diagnostics", f"{label}: forward pass", forward_s, "s", key=f"diagnostics/{case.name}/forward_s"))
    out.add(
        Result(
            "diagnostics",
            f"{label}: diagnostics pass / forward",
            ratio,
            "x",
            f"<= {TIME_GOAL}",
            ratio <= TIME_GOAL,
            "hooks summing |h| per input feature and keeping the penultimate rows; modes and buffers restored",
            key=f"diagnostics/{case.name}/pass_ratio",
        )
    )
    out.add(
        Result(
            "diagnostics",
            f"{case.name}: control, forward with no-op hooks / forward",
            hook_cost,
            "x",
            note=f"the same {len(hooked)} module(s) hooked, doing nothing: what a hook costs by itself",
            key=f"diagnostics/{case.name}/hooked_ratio",
        )
    )
    out.add(
        Result(
            "diagnostics",
            f"{case.name}: work after the pass (spectra, scores)",
            fixed_s * 1e3,
            "ms",
            note=f"{weights} weight(s) and {recorder.num_rows} feature rows; {fixed_s / forward_s * 100:.0f}% of this "
            "forward pass; independent of the data size",
            key=f"diagnostics/{case.name}/after_ms",
        )
    )
    out.add(
        Result(
            "diagnostics",
            f"{label}: whole diagnose() call / forward",
            call,
            "x",
            note="the pass, then the work after it, which does not grow with the data",
            key=f"diagnostics/{case.name}/call_ratio",
        )
    )


def run(cfg: Config, out: Run, cases: tuple[str, ...] = CASES) -> None:
    """Time every case into ``out``.

    Examples
    --------
    >>> out = Run("doctest", {})
    >>> run(Config.make(quick=True, repeats=1), out, cases=("mlp",))
    >>> sorted(r.key.rsplit("/", 1)[1] for r in out.results)
    ['after_ms', 'call_ratio', 'forward_s', 'hooked_ratio', 'pass_ratio']
    """
    for name in cases:
        _time_case(make_case(name, quick=cfg.quick, device=cfg.device), cfg, out)


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, time the cases, print and write the results."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_diagnostics", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 2 repeats: a smoke run")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 7, 2 with --quick)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--out", metavar="DIR", help="write results.json, results.csv and results.md into DIR")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = Config.make(args.quick, "cpu", args.repeats)
    command = "python -m benchmarks.bench_diagnostics " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    out = Run(command.strip(), machine(cfg.device))
    start = time.perf_counter()
    run(cfg, out)
    out.seconds = time.perf_counter() - start
    print(out.markdown())
    if args.out:
        out.write_folder(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
