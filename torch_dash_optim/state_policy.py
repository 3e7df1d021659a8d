"""What happens to the optimizer's state of a parameter after DASH shrinks it.

``"keep"`` (the paper): nothing. ``"scale"``: first moments are multiplied by the same factors
as the weights, second moments by the factors squared, so that e.g. Adam's update direction is
that of a freshly shrunk trajectory. ``"reset"``: the state of every shrunk parameter is dropped,
and the optimizer re-initialises it at its next step.

Keys are recognised by name across ``torch.optim``: SGD and RMSprop ``momentum_buffer``, Adam(W)
``exp_avg``, RMSprop ``grad_avg`` (first moments); Adam(W) ``exp_avg_sq`` and
``max_exp_avg_sq``, RMSprop ``square_avg``, Adagrad ``sum`` (second moments). Scalars (``step``
counters, ASGD's ``eta`` and ``mu``) are left alone. Any other tensor is left alone too and
reported, so that a moment this module does not know is never scaled silently wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor
from torch.optim import Optimizer

__all__ = ["FIRST_MOMENT_KEYS", "SECOND_MOMENT_KEYS", "STATE_POLICIES", "StatePlan", "plan_state"]

#: The accepted values of ``state=``.
STATE_POLICIES: tuple[str, ...] = ("keep", "scale", "reset")
#: State keys scaled by the factor under ``state="scale"``.
FIRST_MOMENT_KEYS: frozenset[str] = frozenset({"momentum_buffer", "exp_avg", "grad_avg"})
#: State keys scaled by the factor squared under ``state="scale"``.
SECOND_MOMENT_KEYS: frozenset[str] = frozenset({"exp_avg_sq", "max_exp_avg_sq", "square_avg", "sum"})


@dataclass
class StatePlan:
    """Changes to make to the optimizer state, computed before anything is touched.

    Attributes
    ----------
    tensors:
        State tensors to scale in place.
    factors:
        Their factors, one per tensor, broadcastable to it.
    drop:
        ``(state, param)`` pairs: the optimizer state mapping and the parameter whose entry
        is to be removed from it (see :meth:`apply_drops`).
    unknown:
        Per parameter name, the state keys left alone because they are not recognised.

    Examples
    --------
    >>> StatePlan()
    StatePlan(tensors=[], factors=[], drop=[], unknown={})
    """

    tensors: list[Tensor] = field(default_factory=list)
    factors: list[Tensor] = field(default_factory=list)
    drop: list[tuple[MutableMapping[Tensor, Any], Tensor]] = field(default_factory=list)
    unknown: dict[str, list[str]] = field(default_factory=dict)

    def apply_drops(self) -> None:
        """Remove the planned state entries (the scaling is applied by the caller)."""
        for state, param in self.drop:
            state.pop(param, None)


def plan_state(
    policy: str,
    optimizer: Optimizer | MutableMapping[Tensor, Mapping[str, Any]],
    shrunk: Sequence[tuple[str, Tensor, Tensor]],
) -> StatePlan:
    """Plan the state update for the shrunk ``(name, param, factor)`` triples.

    ``optimizer`` is the optimizer whose state is planned for, or its ``state`` mapping.

    Examples
    --------
    >>> p = torch.nn.Parameter(torch.ones(2, 2))
    >>> state = {p: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2, 2), "exp_avg_sq": torch.ones(2, 2)}}
    >>> plan = plan_state("scale", state, [("w", p, torch.tensor([[0.5], [1.0]]))])
    >>> [f.flatten().tolist() for f in plan.factors]
    [[0.5, 1.0], [0.25, 1.0]]
    """
    state = optimizer.state if isinstance(optimizer, Optimizer) else optimizer
    plan = StatePlan()
    if policy == "keep":
        return plan
    for name, param, factor in shrunk:
        entry = state.get(param)
        if not entry:
            continue
        if policy == "reset":
            plan.drop.append((state, param))
            continue
        for key, value in entry.items():
            if not isinstance(value, Tensor) or value.ndim == 0:
                continue  # step counters and other scalars
            if value.shape == param.shape:
                if key in FIRST_MOMENT_KEYS:
                    plan.tensors.append(value)
                    plan.factors.append(factor)
                    continue
                if key in SECOND_MOMENT_KEYS:
                    plan.tensors.append(value)
                    plan.factors.append(factor * factor)
                    continue
            plan.unknown.setdefault(name, []).append(key)
    return plan
