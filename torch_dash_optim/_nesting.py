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
    """Return ``optimizer`` and every optimizer nested in it, outermost first, each once.

    Examples
    --------
    >>> from torch_dash_optim import SAM
    >>> sam = SAM([torch.nn.Parameter(torch.ones(2))], torch.optim.SGD, lr=0.1)
    >>> [type(o).__name__ for o in optimizer_chain(sam)]
    ['SAM', 'SGD']
    """
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

    A wrapper whose ``state`` reads through to the optimizer it wraps yields that mapping
    once, owned by the innermost optimizer that holds it (the one whose ``step`` uses it).
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

    A schedule-free optimizer (Defazio et al.'s ``schedulefree`` package) in eval mode holds the
    averaged point :math:`x` in the parameters instead of the training point :math:`y`; its
    ``train()`` and ``eval()`` move between them. It is recognised by ``train``/``eval``
    methods, a ``train_mode`` flag (in its param groups, or on itself for its wrapper) that is
    false everywhere, and a ``z`` sequence in its state (without state, :math:`x = y`).

    Examples
    --------
    >>> schedule_free_in_eval(torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.1))
    []
    """
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
