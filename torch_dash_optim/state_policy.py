"""What happens to the optimizer's state of a parameter after DASH shrinks it.

Two kinds of state are told apart by key:

* **Weight-like state** holds a copy of the weights, not a statistic of the gradients:
  Lookahead's slow weights (timm's ``lookahead_slow_buff``), the ``z`` sequence of
  schedule-free optimizers (and the ``x``/``y`` copies of their reference versions), ASGD's
  averaged weights ``ax``. It is multiplied by the same factors as the weights under *every*
  policy, ``"keep"`` included: otherwise the next Lookahead sync or schedule-free
  interpolation pulls the weights back towards their unshrunk copy.
* **Moments** follow the ``state=`` policy. ``"keep"`` (the paper): nothing. ``"scale"``:
  first moments (and other state linear in the gradient's or the weights' scale) are
  multiplied by the factors, second moments by the factors squared, so that e.g. Adam's update
  direction is that of a freshly shrunk trajectory. ``"reset"``: the state of every shrunk
  parameter is dropped, and the optimizer re-initialises it at its next step, exactly as at its
  first one (weight-like state included: the optimizer re-creates it from the shrunk weights).
  Group-level counters (schedule-free's ``k`` and its running sums, a per-group ``step``)
  restart too, to a fresh optimizer's values; since they are shared by the whole group, that
  needs every parameter of the group with state to be reset, and is refused otherwise.

Nested optimizers are searched too: the state that timm's ``Lookahead`` keeps in its base
optimizer, the base optimizer of a SAM. Scalars (``step`` counters, ASGD's ``eta`` and
``mu``) are left alone. Any other tensor is left alone as well, listed in the report
(:attr:`DASHReport.unknown_state <torch_dash_optim.DASHReport.unknown_state>`) and warned
about once per set of keys (:class:`UnknownStateWarning`), so that neither a moment nor a copy
of the weights that this module does not know is ever scaled by guesswork.

Fused and foreach optimizers: dropping the state of some parameters of a group is safe for
every ``torch.optim`` optimizer except fused SGD with momentum, whose step needs all or none
of a group's momentum buffers. There ``"reset"`` zeroes the momentum buffers of the shrunk
parameters instead, which is exactly a fresh buffer when ``dampening`` is 0 (the default).

``torch.optim.LBFGS`` keeps one history for all its parameters (the curvature pairs of the
flattened parameter vector, its last direction and step), stored under its first parameter
only. ``"keep"`` leaves it alone. ``"reset"`` restarts it whole as soon as any of its
parameters is shrunk (a pair that spans shrunk and unshrunk coordinates cannot be restarted in
part), exactly as a fresh LBFGS on the shrunk weights. ``"scale"`` has no meaning for such a
history and is refused before anything changes (:func:`check_policy`).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from ._nesting import state_mappings

__all__ = [
    "FIRST_MOMENT_KEYS",
    "LBFGS_KEYS",
    "SECOND_MOMENT_KEYS",
    "STATE_POLICIES",
    "WEIGHT_KEYS",
    "StatePlan",
    "UnknownStateWarning",
    "check_policy",
    "plan_state",
]

#: The accepted values of ``state=``.
STATE_POLICIES: tuple[str, ...] = ("keep", "scale", "reset")
#: State keys scaled by the factor under ``state="scale"``: first moments (SGD and RMSprop
#: ``momentum_buffer``, ``exp_avg`` of the Adam family, centred RMSprop ``grad_avg``, Adan's
#: ``exp_avg_diff``), previous gradients (Rprop ``prev``, Adan ``neg_pre_grad``, MARS
#: ``last_grad``), Adamax's ``exp_inf`` (a running max of ``|grad|``) and Rprop's per-element
#: ``step_size`` (a length in weight units).
FIRST_MOMENT_KEYS: frozenset[str] = frozenset(
    {
        "momentum_buffer",
        "exp_avg",
        "grad_avg",
        "exp_inf",
        "prev",
        "step_size",
        "exp_avg_diff",
        "neg_pre_grad",
        "last_grad",
    }
)
#: State keys scaled by the factor squared under ``state="scale"``: ``exp_avg_sq`` and
#: ``max_exp_avg_sq`` (Adam, AdamW, AMSGrad, ...), ``square_avg`` (RMSprop, Adadelta),
#: ``acc_delta`` (Adadelta), ``sum`` (Adagrad), ``row_var``/``col_var``/``variance``
#: (Adafactor; its factored moment ``row_var``/``col_var`` is scaled so that the second moment
#: it stands for is multiplied by the factors squared, see ``_plan_factored``) and
#: AdaBelief's ``exp_avg_var``/``max_exp_avg_var``.
SECOND_MOMENT_KEYS: frozenset[str] = frozenset(
    {
        "exp_avg_sq",
        "max_exp_avg_sq",
        "square_avg",
        "acc_delta",
        "sum",
        "row_var",
        "col_var",
        "variance",
        "exp_avg_var",
        "max_exp_avg_var",
    }
)
#: State keys that hold a copy of the weights, scaled by the factor under every policy:
#: timm Lookahead's ``lookahead_slow_buff``, ``slow_param``/``slow_buffer`` (other Lookahead
#: implementations), schedule-free's ``z`` (and ``x``, ``y`` in its reference optimizers) and
#: ASGD's averaged weights ``ax``.
WEIGHT_KEYS: frozenset[str] = frozenset({"lookahead_slow_buff", "slow_param", "slow_buffer", "z", "x", "y", "ax"})
#: The state of ``torch.optim.LBFGS``: one history over all its parameters, kept under its first
#: parameter (the last direction ``d`` and step ``t``, the curvature pairs ``old_dirs``/``old_stps``
#: with ``ro`` and ``al``, ``H_diag``, ``prev_flat_grad``, ``prev_loss`` and the counters). It is
#: never scaled: ``"keep"`` leaves it, ``"reset"`` drops it whole, ``"scale"`` is refused.
LBFGS_KEYS: frozenset[str] = frozenset(
    {"d", "t", "old_dirs", "old_stps", "ro", "al", "H_diag", "prev_flat_grad", "prev_loss", "func_evals", "n_iter"}
)

_WARNED: set[frozenset[tuple[str, str]]] = set()


class UnknownStateWarning(UserWarning):
    """An optimizer holds state tensors that DASH does not recognise and left alone.

    Issued once per set of ``(optimizer class, key)`` pairs. If such a tensor is a copy of the
    weights (slow weights, an average), it still holds the unshrunk weights.

    Examples
    --------
    A state key that DASH does not know is left alone and listed (and warned about, the first
    time this process meets that set of keys):

    >>> import warnings
    >>> p = torch.nn.Parameter(torch.ones(2, 2))
    >>> state = {p: {"my_buffer": torch.ones(2, 2)}}
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     plan = plan_state("scale", state, [("w", p, torch.tensor([[0.5], [1.0]]))])
    >>> plan.unknown
    {'w': ['my_buffer']}
    >>> {w.category.__name__ for w in caught} <= {"UnknownStateWarning"}
    True

    Silence it once the keys are known to be harmless:

    >>> with warnings.catch_warnings():
    ...     warnings.filterwarnings("ignore", category=UnknownStateWarning)
    ...     plan = plan_state("scale", state, [("w", p, torch.tensor([[0.5], [1.0]]))])
    """


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
    zero:
        State tensors to fill with zeros (``"reset"`` where an entry cannot be dropped).
    unknown:
        Per parameter name, the state keys left alone because they are not recognised.

    Examples
    --------
    >>> StatePlan()
    StatePlan(tensors=[], factors=[], drop=[], zero=[], unknown={})
    """

    tensors: list[Tensor] = field(default_factory=list)
    factors: list[Tensor] = field(default_factory=list)
    drop: list[tuple[MutableMapping[Tensor, Any], Tensor]] = field(default_factory=list)
    zero: list[Tensor] = field(default_factory=list)
    unknown: dict[str, list[str]] = field(default_factory=dict)
    groups: list[tuple[dict[str, Any], str, Any]] = field(default_factory=list, repr=False)

    def apply_drops(self) -> None:
        """Remove the planned state entries, zero the planned tensors and restart the planned group
        counters (the scaling is the caller's)."""
        if self.zero:
            torch._foreach_zero_(self.zero)
        for state, param in self.drop:
            state.pop(param, None)
        for group, key, value in self.groups:
            if value is _ABSENT:
                group.pop(key, None)
            else:
                group[key] = copy.deepcopy(value)


def plan_state(
    policy: str,
    optimizer: Optimizer | MutableMapping[Tensor, Mapping[str, Any]],
    shrunk: Sequence[tuple[str, Tensor, Tensor]],
) -> StatePlan:
    """Plan the state update for the shrunk ``(name, param, factor)`` triples.

    Parameters
    ----------
    policy:
        ``"keep"``, ``"scale"`` or ``"reset"`` (see the module's description).
    optimizer:
        The optimizer whose state is planned for (optimizers nested in it, such as the base
        optimizer of a Lookahead, are searched too), or a bare ``state`` mapping.
    shrunk:
        ``(name, param, factor)`` for every shrunk parameter; ``factor`` broadcasts to
        ``param``.

    Returns
    -------
    StatePlan
        Nothing is changed until the caller applies the plan.

    Warns
    -----
    UnknownStateWarning
        Once per set of unrecognised keys (they are also in :attr:`StatePlan.unknown`).

    Examples
    --------
    >>> p = torch.nn.Parameter(torch.ones(2, 2))
    >>> state = {p: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2, 2), "exp_avg_sq": torch.ones(2, 2)}}
    >>> plan = plan_state("scale", state, [("w", p, torch.tensor([[0.5], [1.0]]))])
    >>> [f.flatten().tolist() for f in plan.factors]
    [[0.5, 1.0], [0.25, 1.0]]

    Weight-like state is scaled under ``"keep"`` too:

    >>> state = {p: {"exp_avg": torch.ones(2, 2), "lookahead_slow_buff": torch.ones(2, 2)}}
    >>> plan = plan_state("keep", state, [("w", p, torch.tensor([[0.5], [1.0]]))])
    >>> [t is state[p]["lookahead_slow_buff"] for t in plan.tensors]
    [True]
    """
    if isinstance(optimizer, Mapping) and not hasattr(optimizer, "param_groups"):
        states: list[tuple[Any, Mapping[Any, Any]]] = [(None, optimizer)]
    else:
        check_policy(policy, optimizer)
        states = state_mappings(optimizer)
    plan = StatePlan()
    for owner, state in states:
        if isinstance(owner, torch.optim.LBFGS):
            _plan_lbfgs(plan, policy, owner, state, shrunk)
    states = [(owner, state) for owner, state in states if not isinstance(owner, torch.optim.LBFGS)]
    unknown_pairs: set[tuple[str, str]] = set()
    for name, param, factor in shrunk:
        for owner, state in states:
            entry = state.get(param)
            if not entry:
                continue
            if policy == "reset" and not _needs_all_or_none(owner, param):
                plan.drop.append((state, param))  # type: ignore[arg-type]
                continue
            _plan_entry(plan, policy, name, param, factor, entry, unknown_pairs, owner)
    if policy == "reset":
        _plan_group_counters(plan, states, shrunk)
    _warn_once(unknown_pairs)
    return plan


def check_policy(policy: str, optimizer: Any) -> None:
    """Refuse, before anything changes, a policy that the optimizer's state cannot follow.

    ``"scale"`` is refused for ``torch.optim.LBFGS`` (and optimizers nested in a wrapper that
    hold one): its state is one history over all its parameters, which no per-unit factor maps
    onto. :func:`plan_state` calls this too.

    Parameters
    ----------
    policy:
        ``"keep"``, ``"scale"`` or ``"reset"``.
    optimizer:
        The optimizer (optimizers nested in it are checked too).

    Raises
    ------
    ValueError
        If ``policy`` is ``"scale"`` and an LBFGS is in the chain.

    Examples
    --------
    >>> w = torch.nn.Parameter(torch.ones(2, 2))
    >>> check_policy("reset", torch.optim.LBFGS([w]))   # keep and reset are fine
    >>> check_policy("scale", torch.optim.LBFGS([w]))
    Traceback (most recent call last):
    ...
    ValueError: state='scale' cannot scale the state of LBFGS: ...
    """
    if policy != "scale":
        return
    for owner, _ in state_mappings(optimizer):
        if isinstance(owner, torch.optim.LBFGS):
            raise ValueError(
                f"state='scale' cannot scale the state of {type(owner).__name__}: it keeps one history over all "
                "its parameters (the curvature pairs of the flattened parameter vector), which no per-unit factor "
                "maps onto. Use state='keep' (the paper's) or state='reset' (the history restarts whole, as in "
                "a fresh LBFGS)"
            )


def _plan_lbfgs(
    plan: StatePlan, policy: str, owner: Any, state: Mapping[Any, Any], shrunk: Sequence[tuple[str, Tensor, Tensor]]
) -> None:
    """LBFGS keeps one history under its first parameter: ``"reset"`` drops it whole if any parameter is shrunk."""
    params = list(getattr(owner, "_params", None) or owner.param_groups[0]["params"])
    if policy != "reset" or not params or not state.get(params[0]):
        return
    shrunk_ids = {id(param) for _, param, _ in shrunk}
    if any(id(p) in shrunk_ids for p in params):
        plan.drop.append((state, params[0]))  # type: ignore[arg-type]


#: Group-level counters, restarted by ``"reset"``: ``"step"`` (optimizers that count steps per
#: group, such as Adan in ``pytorch_optimizer``), and schedule-free's step count ``"k"`` with
#: the running sums that go with it (recognised by ``"weight_sum"`` in the same group).
GROUP_COUNTER_KEYS: tuple[str, ...] = ("step",)
SCHEDULE_FREE_COUNTER_KEYS: tuple[str, ...] = ("k", "weight_sum", "lr_max", "scheduled_lr")
_ABSENT = object()


def _group_counters(group: Mapping[str, Any]) -> list[str]:
    keys = [k for k in GROUP_COUNTER_KEYS if k in group]
    if "k" in group and "weight_sum" in group:
        keys += [k for k in SCHEDULE_FREE_COUNTER_KEYS if k in group]
    return keys


def _plan_group_counters(
    plan: StatePlan, states: list[tuple[Any, Mapping[Any, Any]]], shrunk: Sequence[tuple[str, Tensor, Tensor]]
) -> None:
    """Restart the group counters of groups whose every parameter with state is reset, or refuse."""
    # A group counter (schedule-free's k, a per-group step) drives the bias correction or averaging
    # of its whole group: left running after the state is dropped, the first update is that of a
    # late step on fresh moments. Restarting it is a fresh start only if every parameter of the
    # group with state starts afresh; otherwise the parameters DASH leaves alone would restart too.
    reset = {id(param) for _, param, _ in shrunk}
    for owner, state in states:
        defaults = getattr(owner, "defaults", None) or {}
        for index, group in enumerate(getattr(owner, "param_groups", ())):
            keys = _group_counters(group)
            if not keys:
                continue
            kept = [p for p in group["params"] if state.get(p) and id(p) not in reset]
            touched = any(id(p) in reset and state.get(p) for p in group["params"])
            if not touched:
                continue
            if kept:
                raise ValueError(
                    f"state='reset' cannot give param group {index} of {type(owner).__name__} a fresh start: "
                    f"its counters {', '.join(map(repr, keys))} are shared by the whole group, which also holds "
                    f"{len(kept)} parameter(s) DASH does not shrink (norm layers, embeddings, ...; the first of "
                    f"shape {tuple(kept[0].shape)}), whose state would restart too. Put the parameters DASH "
                    "shrinks (Conv/Linear weights and biases) in param groups of their own, or use "
                    "state='keep' or state='scale'"
                )
            for key in keys:
                plan.groups.append((group, key, defaults.get(key, _ABSENT)))


def _is_state_tensor(value: Any) -> bool:
    return isinstance(value, Tensor) and value.ndim > 0 and value.is_floating_point()


def _fit(factor: Tensor, value: Tensor, param: Tensor) -> Tensor | None:
    """``factor`` shaped to scale ``value`` (the parameter's shape, or it with dimensions reduced to 1), or None."""
    if value.shape == param.shape:
        return factor
    if value.ndim != param.ndim or factor.ndim > param.ndim:
        return None
    shape = (1,) * (param.ndim - factor.ndim) + tuple(factor.shape)
    for v, p, f in zip(value.shape, param.shape, shape):
        if v != p and not (v == 1 and f == 1):
            return None
    return factor.reshape(shape)


def _needs_all_or_none(owner: Any, param: Tensor) -> bool:
    """Fused SGD with momentum steps a group only if all or none of its buffers exist."""
    if not isinstance(owner, torch.optim.SGD):
        return False
    for group in owner.param_groups:
        if any(p is param for p in group["params"]):
            return bool(group.get("fused")) and group.get("momentum", 0) != 0
    return False


def _plan_entry(
    plan: StatePlan,
    policy: str,
    name: str,
    param: Tensor,
    factor: Tensor,
    entry: Mapping[str, Any],
    unknown_pairs: set[tuple[str, str]],
    owner: Any,
) -> None:
    """Plan one state entry: weight-like state scaled always, moments as the policy says, anything else reported."""
    factored = policy == "scale" and _plan_factored(plan, param, factor, entry, owner)
    for key, value in entry.items():
        if not _is_state_tensor(value) or value is param or (factored and key in FACTORED_KEYS):
            continue
        fitted = _fit(factor, value, param)
        moment = key in FIRST_MOMENT_KEYS or key in SECOND_MOMENT_KEYS
        if key in WEIGHT_KEYS and fitted is not None:
            plan.tensors.append(value)
            plan.factors.append(fitted)
        elif moment and policy == "keep":
            continue  # a known moment, of whatever shape (Adafactor's col_var is 1 x columns): left alone
        elif moment and policy == "reset":
            plan.zero.append(value)
        elif key in FIRST_MOMENT_KEYS and fitted is not None:
            plan.tensors.append(value)
            plan.factors.append(fitted)
        elif key in SECOND_MOMENT_KEYS and fitted is not None:
            plan.tensors.append(value)
            plan.factors.append(fitted * fitted)
        else:
            plan.unknown.setdefault(name, []).append(key)
            unknown_pairs.add((type(owner).__name__ if owner is not None else "state", key))


#: The factored second moment of ``torch.optim.Adafactor`` (parameters of 2 dimensions or more).
FACTORED_KEYS: tuple[str, str] = ("row_var", "col_var")


def _plan_factored(plan: StatePlan, param: Tensor, factor: Tensor, entry: Mapping[str, Any], owner: Any) -> bool:
    """Plan the scaling of Adafactor's factored second moment (``row_var``, ``col_var``); False if there is none."""
    # Adafactor's second moment is V_ij = r_i c_j / max(mean(r), eps1), with r = row_var and
    # c = col_var. Scaling r and c by f^2 each is right only for one factor per matrix; a Linear
    # layer's factors differ from row to row. For factors f_i constant along each row, V_ij f_i^2
    # is exactly the product of r'_i = f_i^2 r_i and c'_j = c_j max(mean(f^2 r), eps1) / max(mean(r), eps1).
    # Factors that vary along a row (no DASH granularity makes them) are left alone, reported.
    row, col = entry.get("row_var"), entry.get("col_var")
    if not (_is_state_tensor(row) and _is_state_tensor(col)) or param.ndim < 2:
        return False
    fitted = (
        factor.reshape((1,) * (param.ndim - factor.ndim) + tuple(factor.shape)) if factor.ndim <= param.ndim else None
    )
    if fitted is None or fitted.shape[-1] != 1 or row.shape[-1] != 1 or col.shape[-2] != 1:
        return False
    eps1 = _adafactor_eps1(owner, param)
    square = fitted.to(row.dtype) ** 2
    with torch.no_grad():
        mean = row.mean(dim=-2, keepdim=True)
        scaled_mean = (square * row).mean(dim=-2, keepdim=True)
        col_factor = scaled_mean.clamp(min=eps1) / mean.clamp(min=eps1)
    plan.tensors += [row, col]
    plan.factors += [square, col_factor]
    return True


def _adafactor_eps1(owner: Any, param: Tensor) -> float:
    """The ``eps1`` of ``param``'s group (Adafactor's ``eps=(eps1, eps2)``; None: the dtype's eps)."""
    for group in getattr(owner, "param_groups", ()):
        if any(p is param for p in group["params"]):
            eps = group.get("eps")
            if isinstance(eps, (tuple, list)) and eps and eps[0] is not None:
                return float(eps[0])
    return float(torch.finfo(param.dtype).eps)


def _warn_once(pairs: set[tuple[str, str]]) -> None:
    key = frozenset(pairs)
    if not pairs or key in _WARNED:
        return
    _WARNED.add(key)
    listed = ", ".join(f"{owner}[{name!r}]" for owner, name in sorted(pairs))
    warnings.warn(
        f"DASH left optimizer state it does not recognise alone: {listed}. If one of these holds a copy "
        "of the weights (slow weights, an average), it still holds the unshrunk weights and will pull the "
        "model back; the keys are listed per parameter in DASHReport.unknown_state "
        "(see torch_dash_optim.state_policy for the keys DASH knows)",
        UnknownStateWarning,
        stacklevel=4,
    )
