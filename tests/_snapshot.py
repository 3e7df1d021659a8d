"""Exact snapshots of everything ``on_new_data`` promises to leave as it was.

The promise (README, "Failure safety"): any failure part-way through leaves the weights, the
gradients (``None`` stays ``None``; a gradient that existed is the same tensor object with the same
values), the buffers, every module's train/eval mode and the optimizer state exactly as before.
A success changes the weights (and the call count) only.

One helper for the whole suite: ``tests/_models.py`` and ``tests/dropin/_common.py`` re-export it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["assert_same", "assert_unchanged", "same", "snapshot"]


def _optimizer_params(opt: torch.optim.Optimizer) -> list[Tensor]:
    seen: set[int] = set()
    out: list[Tensor] = []
    for group in opt.param_groups:
        for p in group["params"]:
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def _named_tensors(
    model: nn.Module | None, opt: torch.optim.Optimizer | None, extra: Iterable[Tensor]
) -> dict[str, Tensor]:
    """Every parameter in sight, by name: the model's, then the optimizer's and ``extra`` ones it lacks."""
    named: dict[str, Tensor] = {}
    ids: set[int] = set()
    if model is not None:
        for name, p in model.named_parameters(remove_duplicate=True):
            named[name] = p
            ids.add(id(p))
    others = (_optimizer_params(opt) if opt is not None else []) + list(extra)
    for i, p in enumerate(others):
        if id(p) not in ids:
            ids.add(id(p))
            named[f"<outside the model {i}>"] = p
    return named


def _clone(value: Any) -> Any:
    return value.detach().clone() if isinstance(value, Tensor) else copy.deepcopy(value)


def snapshot(
    model: nn.Module | None,
    opt: torch.optim.Optimizer | None = None,
    *,
    extra: Iterable[Tensor] = (),
) -> dict[str, Any]:
    """Copies (and the objects themselves, for identity checks) of everything a call may touch.

    Parameters
    ----------
    model:
        The model (``None`` without one). Pass a container (``nn.ModuleDict``) to cover a loss
        module with parameters of its own as well.
    opt:
        The optimizer (wrapped or bare), if any: its parameters outside the model are covered too.
    extra:
        More tensors (parameters outside both) whose value and ``.grad`` are covered.
    """
    params = _named_tensors(model, opt, extra)
    snap: dict[str, Any] = {
        "params": {n: p.detach().clone() for n, p in params.items()},
        "param_objects": dict(params),
        "grads": {n: (None if p.grad is None else p.grad.detach().clone()) for n, p in params.items()},
        "grad_objects": {n: p.grad for n, p in params.items()},  # kept alive: `is` is sound
        "buffers": {},
        "buffer_objects": {},
        "modes": {},
    }
    if model is not None:
        snap["buffers"] = {n: b.detach().clone() for n, b in model.named_buffers()}
        snap["buffer_objects"] = dict(model.named_buffers())
        snap["modes"] = {n: m.training for n, m in model.named_modules(remove_duplicate=False)}
    if opt is not None:
        index = {id(p): i for i, p in enumerate(_optimizer_params(opt))}
        state = {index.get(id(p), f"<not a param {k}>"): s for k, (p, s) in enumerate(opt.state.items())}
        snap["opt_state"] = {i: {k: _clone(v) for k, v in s.items()} for i, s in state.items()}
        snap["opt_state_objects"] = {i: dict(s) for i, s in state.items()}
        snap["groups"] = [{k: copy.deepcopy(v) for k, v in g.items() if k != "params"} for g in opt.param_groups]
        snap["group_params"] = [[id(p) for p in g["params"]] for g in opt.param_groups]
        snap["state_dict"] = copy.deepcopy(opt.state_dict())
        snap["calls"] = getattr(opt, "num_dash_calls", None)
    return snap


def same(a: Any, b: Any) -> bool:
    """Exact equality: tensors bit for bit (NaN equal to NaN, dtype and shape included), containers deeply."""
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return (
            isinstance(a, Tensor)
            and isinstance(b, Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.device == b.device
            and bool(torch.equal(a, b) or (a.isnan().any() and torch.equal(a.nan_to_num(), b.nan_to_num())))
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _diff(key: str, a: Any, b: Any) -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f"{key}: entries differ: {sorted(map(str, a.keys() ^ b.keys()))}"
        for k in a:
            found = _diff(f"{key}[{k!r}]", a[k], b[k])
            if found:
                return found
        return None
    return None if same(a, b) else f"{key} changed"


def _identity_diff(key: str, a: dict[Any, Any], b: dict[Any, Any]) -> str | None:
    if a.keys() != b.keys():
        return f"{key}: entries differ: {sorted(map(str, a.keys() ^ b.keys()))}"
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, dict):
            found = _identity_diff(f"{key}[{k!r}]", x, y)
            if found:
                return found
        elif (isinstance(x, Tensor) or x is None) and x is not y:
            return f"{key}[{k!r}] is a different object"
    return None


def assert_same(before: dict[str, Any], after: dict[str, Any], *, weights: bool = True) -> None:
    """Assert that two snapshots are identical: values bit for bit, and the same tensor objects.

    With ``weights=False`` (after a successful call) the parameter values, the DASH call count
    and the ``state_dict`` (which records that count) are not compared; the optimizer's state
    tensors and hyperparameters still are, value and identity.
    """
    value_keys = ["grads", "buffers", "modes", "opt_state", "groups", "group_params"]
    if weights:
        value_keys += ["params", "state_dict", "calls"]
    problems = [
        found for key in value_keys if key in before for found in [_diff(key, before[key], after[key])] if found
    ]
    for key in ("param_objects", "grad_objects", "buffer_objects", "opt_state_objects"):
        if key in before:
            found = _identity_diff(key, before[key], after[key])
            if found:
                problems.append(found)
    assert not problems, "; ".join(problems)


def assert_unchanged(
    before: dict[str, Any],
    model: nn.Module | None,
    opt: torch.optim.Optimizer | None = None,
    *,
    extra: Iterable[Tensor] = (),
    weights: bool = True,
) -> None:
    """Take a new snapshot and assert it equals ``before`` (see :func:`assert_same`)."""
    assert_same(before, snapshot(model, opt, extra=extra), weights=weights)
