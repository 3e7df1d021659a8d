"""Goal 3: shrink-only time, the library's grouped path against per-tensor loops.

Two parameter sets: the Conv/Linear parameters of the CIFAR ResNet-18 (11.2M) and a GPT-2-small
shaped stack of Linear layers of about 99M parameters (:class:`benchmarks.models.GPTLinearStack`,
whose floor pass is timed per token here). Directions are random. Reported in microseconds per
million parameters, for the factors (cosines), the in-place multiply, and both.

- *grouped* (what ``DASHWrapper`` runs): :func:`torch_dash_optim.functional.dash_factors_many`
  (one reused scratch buffer, matrix-vector sums for short units, ``torch._foreach_*``
  epilogue), then one :func:`torch_dash_optim.functional.shrink_` call (one
  ``torch._foreach_mul_`` over every tensor).
- *per_tensor*: :func:`torch_dash_optim.functional.dash_factors` tensor by tensor, then the same
  ``shrink_``.
- *loop*: the anchor's per-tensor ``cosine_similarity`` + ``mul_``, one tensor at a time
  (:func:`benchmarks.naive.per_tensor_shrink`).
- *mul only*: ``shrink_`` against a Python loop of ``mul_``, with the same factors.
"""

from __future__ import annotations

import torch
from torch import Tensor

from torch_dash_optim import functional as F

from .config import Config
from .models import GPTLinearStack, make_resnet18
from .naive import per_tensor_shrink
from .results import Result, Run
from .timing import time_side_by_side

__all__ = ["gpt_floor", "gpt_stack", "param_set", "run"]

SHRINK_GOAL = 0.02


def param_set(name: str, quick: bool, device: str = "cpu") -> list[Tensor]:
    """Copies of the shrinkable parameters of ``"resnet18"`` or the ``"gpt100m"`` Linear stack.

    Examples
    --------
    >>> sum(p.numel() for p in param_set("resnet18", quick=True)) > 0
    True
    """
    torch.manual_seed(0)
    if name == "resnet18":
        model = make_resnet18(4 if quick else 64)
        return [p.detach().clone().to(device) for n, p in model.named_parameters() if p.ndim > 1 or n.startswith("fc.")]
    if name == "gpt100m":
        return [p.detach().clone().to(device) for p in gpt_stack(quick).parameters()]
    raise ValueError(f"unknown parameter set {name!r}; use 'resnet18' or 'gpt100m'")


def gpt_stack(quick: bool) -> GPTLinearStack:
    """The ~99M-parameter Linear stack (tiny when ``quick``)."""
    return GPTLinearStack(*((64, 2) if quick else (768, 14)))


def gpt_floor(cfg: Config, tokens: int = 256) -> float:
    """Seconds per token of a floor pass (forward + backward) of :func:`gpt_stack`."""
    torch.manual_seed(0)
    model = gpt_stack(cfg.quick).to(cfg.device)
    x = torch.randn(tokens, model.blocks[0].qkv.in_features, device=cfg.device)

    def floor() -> None:
        model(x).square().mean().backward()

    def clear() -> None:
        model.zero_grad(set_to_none=True)

    t = time_side_by_side({"floor": floor}, max(3, cfg.repeats // 2), cfg.warmup, cfg.device, clear)
    return t.median("floor") / tokens


def _grouped(params: list[Tensor], dirs: list[Tensor], dims: list[tuple[int, ...]]) -> None:
    F.shrink_(params, F.dash_factors_many(params, dirs, dims, 0.3))


def _per_tensor(params: list[Tensor], dirs: list[Tensor], dims: list[tuple[int, ...]]) -> None:
    F.shrink_(params, [F.dash_factors(p, d, dm, 0.3) for p, d, dm in zip(params, dirs, dims, strict=True)])


def run(
    cfg: Config,
    out: Run,
    floors: dict[str, float] | None = None,
    floor_per_sample: dict[str, float] | None = None,
) -> None:
    """Time the shrink on both parameter sets and relate it to the floor passes given.

    ``floors`` maps a set name to the seconds of a floor pass measured in the same run, and
    ``floor_per_sample`` to the seconds of the floor pass per sample (for the break-even data size).
    """
    for name in ("resnet18", "gpt100m"):
        params = param_set(name, cfg.quick, cfg.device)
        dirs = [torch.randn_like(p) for p in params]
        dims = [F.unit_dims(p.ndim) for p in params]
        factors = [F.dash_factors(p, d, dm, 0.3) for p, d, dm in zip(params, dirs, dims, strict=True)]
        snapshot = [p.clone() for p in params]
        mparams = sum(p.numel() for p in params) / 1e6

        def restore(params: list[Tensor] = params, snapshot: list[Tensor] = snapshot) -> None:
            torch._foreach_copy_(params, snapshot)

        methods = {
            "grouped": lambda p=params, d=dirs, dm=dims: _grouped(p, d, dm),
            "per_tensor": lambda p=params, d=dirs, dm=dims: _per_tensor(p, d, dm),
            "loop": lambda p=params, d=dirs: per_tensor_shrink(p, d, 0.3),
            "factors_grouped": lambda p=params, d=dirs, dm=dims: F.dash_factors_many(p, d, dm, 0.3),
            "mul_foreach": lambda p=params, f=factors: F.shrink_(p, f),
            "mul_loop": lambda p=params, f=factors: [a.mul_(b) for a, b in zip(p, f, strict=True)],
        }
        t = time_side_by_side(methods, cfg.repeats, cfg.warmup, cfg.device, restore)
        del snapshot, dirs
        label = f"{name} ({mparams:.1f}M params, {len(params)} tensors)"
        for method in methods:
            out.add(
                Result(
                    "shrink",
                    f"{label}: {method}",
                    t.median(method) / mparams * 1e6,
                    "us/Mparam",
                    key=f"shrink/{name}/{method}",
                )
            )
        out.add(
            Result(
                "shrink",
                f"{label}: loop / grouped",
                t.ratio("loop", "grouped"),
                "x",
                note="speed-up of the grouped factors + foreach shrink over the anchor's per-tensor loop",
                key=f"shrink/{name}/loop_over_grouped",
            )
        )
        out.add(
            Result(
                "shrink",
                f"{label}: per_tensor / grouped",
                t.ratio("per_tensor", "grouped"),
                "x",
                key=f"shrink/{name}/per_tensor_over_grouped",
            )
        )
        out.add(
            Result(
                "shrink",
                f"{label}: mul loop / mul foreach",
                t.ratio("mul_loop", "mul_foreach"),
                "x",
                key=f"shrink/{name}/mul_loop_over_foreach",
            )
        )
        if floors and name in floors:
            share = t.median("grouped") / floors[name]
            out.add(
                Result(
                    "shrink",
                    f"{label}: shrink / floor pass",
                    share,
                    "x",
                    f"< {SHRINK_GOAL}",
                    share < SHRINK_GOAL,
                    "floor pass over the gather benchmark's loader",
                    key=f"shrink/{name}/share_of_floor",
                )
            )
        if floor_per_sample and name in floor_per_sample:
            samples = t.median("grouped") / (SHRINK_GOAL * floor_per_sample[name])
            what = "tokens" if name == "gpt100m" else "samples"
            out.add(
                Result(
                    "shrink",
                    f"{label}: data size where shrink = 2% of floor",
                    samples,
                    what,
                    note=f"floor pass {floor_per_sample[name] * 1e3:.2f} ms per {what[:-1]}",
                    key=f"shrink/{name}/breakeven",
                )
            )
