"""Walk the optimizers nested inside a wrapper (Accelerate, Lightning, Lookahead, SAM, ...).

Frameworks hand training code a proxy around the optimizer it built, and optimizer wrappers
keep the optimizer they wrap under an attribute. This module finds them all, without calling
anything: only instance attributes are read, so a proxy's ``__getattr__`` is never triggered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["INNER_ATTRIBUTES", "describe", "optimizer_chain", "state_mappings"]

#: Instance attributes under which wrappers keep the optimizer they wrap, in the order they
#: are followed: Lightning's ``LightningOptimizer`` and Fabric's proxy (``_optimizer``), this
#: package's wrappers (``_inner``), Accelerate's ``AcceleratedOptimizer`` (``optimizer``),
#: timm's ``Lookahead`` (``_base_optimizer``), SAM implementations (``base_optimizer``),
#: schedule-free's ``ScheduleFreeWrapper`` (``base``) and ``ZeroRedundancyOptimizer``
#: (``optim``).
INNER_ATTRIBUTES: tuple[str, ...] = (
    "_optimizer",
    "_inner",
    "optimizer",
    "_base_optimizer",
    "base_optimizer",
    "base",
    "optim",
)


def _is_optimizer_like(value: Any) -> bool:
    if not callable(getattr(type(value), "step", None)):
        return False
    try:
        return hasattr(value, "param_groups")
    except Exception:  # a property that fails: not something we can walk into
        return False


def optimizer_chain(optimizer: Any) -> list[Any]:
    """``optimizer`` and every optimizer nested in it (under :data:`INNER_ATTRIBUTES`), outermost first, each once."""
    chain: list[Any] = []
    seen: set[int] = set()
    todo = [optimizer]
    while todo:
        obj = todo.pop(0)
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        chain.append(obj)
        attrs = getattr(obj, "__dict__", None)
        if not isinstance(attrs, dict):
            continue
        for name in INNER_ATTRIBUTES:
            value = attrs.get(name)
            if value is not None and id(value) not in seen and _is_optimizer_like(value):
                todo.append(value)
    return chain


def state_mappings(optimizer: Any) -> list[tuple[Any, Mapping[Any, Any]]]:
    """``(owner, state)`` for every distinct ``state`` mapping in the chain, outermost first.

    A mapping that wrappers read through to is owned by the innermost optimizer that holds it.
    """
    found: dict[int, tuple[Any, Mapping[Any, Any]]] = {}
    for owner in optimizer_chain(optimizer):
        try:
            state = owner.state
        except Exception:  # a proxy whose state property fails is skipped, not fatal
            continue
        if isinstance(state, Mapping):
            found[id(state)] = (owner, state)  # dicts keep first-seen order; the owner is the innermost
    return list(found.values())


def describe(chain: list[Any]) -> str:
    """``"AcceleratedOptimizer -> Lookahead -> AdamW"``."""
    return " -> ".join(type(o).__name__ for o in chain)


def schedule_free_in_eval(optimizer: Any) -> list[Any]:
    """The schedule-free optimizers in ``optimizer``'s chain that are in eval mode with state.

    In eval mode they hold the averaged point x in the parameters, not the training point y.
    """
    # Recognised by train()/eval() methods, a train_mode flag (in the param groups, or on the
    # object for schedulefree's wrapper) that is false everywhere, and a "z" sequence in the state
    # (without state, x = y).
    found = []
    for obj in optimizer_chain(optimizer):
        cls = type(obj)
        if not (callable(getattr(cls, "train", None)) and callable(getattr(cls, "eval", None))):
            continue
        attrs = getattr(obj, "__dict__", {})
        if "train_mode" in attrs:
            flags = [attrs["train_mode"]]
        else:
            flags = [g["train_mode"] for g in getattr(obj, "param_groups", ()) if "train_mode" in g]
        state = getattr(obj, "state", None)
        if not flags or any(flags) or not isinstance(state, Mapping):
            continue
        if any(isinstance(entry, Mapping) and "z" in entry for entry in state.values()):
            found.append(obj)
    return found


def set_eval_flag(optimizer: Any) -> None:
    """Mark a schedule-free optimizer as in eval mode again, without moving its parameters."""
    attrs = getattr(optimizer, "__dict__", {})
    if "train_mode" in attrs:
        attrs["train_mode"] = False
    for group in getattr(optimizer, "param_groups", ()):
        if "train_mode" in group:
            group["train_mode"] = False
