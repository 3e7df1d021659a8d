"""Which of the optimizer's parameters DASH shrinks, and with which units.

:func:`select` goes through the optimizer's param groups: it splits each parameter into units by
the unit rule of the module that owns it (:mod:`~torch_dash_optim.units`: the rules by module
type, tied weights, and the shape rule without a model), names it as
:mod:`~torch_dash_optim.names` does (without the levels of wrapper modules such as DDP or
:func:`torch.compile`), applies the patterns and the param groups' keys below, and gives the
parameters to shrink (:class:`Target`) and those left alone, each with its reason
(:class:`Selection`).

**Choosing by name.** ``include=`` and ``exclude=`` take glob patterns
(``fnmatch.fnmatchcase``; ``*`` also matches dots) over the qualified parameter names, or the
name of a module that holds the parameter: ``exclude="lm_head"`` and ``exclude="lm_head.*"`` both
leave ``lm_head.weight`` alone. A tied parameter matches through any of its names. ``exclude``
always wins; ``include`` restricts DASH to the matching parameters, and never adds one that no
rule shrinks; a param group with ``"dash": False`` is never shrunk, whatever ``include`` says. A
pattern that matches none of the optimizer's parameters is an error.

Param groups may override the wrapper's settings with the keys ``"dash"`` (bool),
``"dash_lambd"`` and ``"dash_granularity"``: names that no optimizer uses (``ASGD`` keeps its
own ``"lambd"`` in every group). The former keys ``"lambd"`` and ``"granularity"`` are refused
with an error that names the new key, except where the optimizer itself owns that key.

Some parameters are never shrunk, and are reported with the reason: parametrized weights
(:mod:`torch.nn.utils.parametrize`: ``weight_norm``, ``spectral_norm``, ``orthogonal``, whose
weight is recomputed from an unconstrained original that a shrink would not scale), empty
tensors, and complex tensors. Selection reads parameters from the modules' parameter
dictionaries, never through ``getattr``, so no parametrization runs and no buffer moves.

The unit rules (:class:`~torch_dash_optim.units.Units`,
:func:`~torch_dash_optim.units.register_unit_rule`, ...) and the names
(:func:`~torch_dash_optim.names.qualified_names`, :func:`~torch_dash_optim.names.qualified_modules`)
are defined in their own modules and remain importable from this one, their former path
(``from torch_dash_optim.selection import Units`` works).
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn
from torch.nn.utils import parametrize

from ._checks import check_bool, check_choice, check_lambd
from .functional import GRANULARITIES, unit_dims
from .names import _Names, _names, _walk, qualified_modules, qualified_names
from .units import (
    EMBEDDING_ROWS,
    NO_RULE,
    SHRINKABLE_MODULES,
    UnitRule,
    Units,
    check_unit_rules,
    register_unit_rule,
    unit_rule_for,
    unregister_unit_rule,
)

__all__ = [
    "GROUP_KEYS",
    "RENAMED_GROUP_KEYS",
    "Selection",
    "Target",
    "check_group",
    "check_patterns",
    "migrate_group_keys",
    "select",
    # defined in .units and .names; still importable from here, their path until the split
    "EMBEDDING_ROWS",
    "SHRINKABLE_MODULES",
    "UnitRule",
    "Units",
    "check_unit_rules",
    "qualified_modules",
    "qualified_names",
    "register_unit_rule",
    "unit_rule_for",
    "unregister_unit_rule",
]

#: Param-group keys that override the wrapper's settings for that group.
GROUP_KEYS: tuple[str, ...] = ("dash", "dash_lambd", "dash_granularity")

#: Former spellings of the group keys, refused with an error that names the new one.
RENAMED_GROUP_KEYS: dict[str, str] = {"lambd": "dash_lambd", "granularity": "dash_granularity"}


@dataclass(frozen=True)
class Target:
    """One parameter to shrink.

    Attributes
    ----------
    name:
        Module-qualified name (``"features.0.weight"``), or ``"param[i]"`` without a model.
    param:
        The parameter itself; it is shrunk in place.
    dims:
        Dimensions reduced per unit.
    lambd:
        The floor of its factors.
    groups:
        Equal blocks of dim 0 that no unit spans (3 for ``nn.MultiheadAttention``'s
        ``in_proj_bias``: its q, k and v thirds); 1 otherwise. See
        :func:`torch_dash_optim.functional.cosine_per_unit`.

    Examples
    --------
    >>> Target("fc.weight", torch.zeros(4, 3), (1,), 0.3).dims
    (1,)
    """

    name: str
    param: Tensor
    dims: tuple[int, ...]
    lambd: float
    groups: int = 1

    def per_unit(self, values: Tensor) -> Tensor:
        """One value per unit, flat, from per-unit values shaped as the factors (blocks of dim 0 repeat theirs).

        Examples
        --------
        >>> t = Target("attn.in_proj_bias", torch.zeros(6), (0,), 0.3, groups=3)
        >>> t.per_unit(torch.tensor([1.0, 1.0, 2.0, 2.0, 3.0, 3.0])).tolist()
        [1.0, 2.0, 3.0]
        """
        flat = values.detach()
        if self.groups > 1 and 0 in {d % self.param.ndim for d in self.dims}:
            flat = flat[:: self.param.shape[0] // self.groups]
        return flat.flatten()


@dataclass(frozen=True)
class Selection:
    """The outcome of :func:`select`.

    Attributes
    ----------
    targets:
        Parameters to shrink, each once (tied weights are deduplicated).
    skipped:
        Parameters left alone, by name, with the reason.
    trainable:
        Every parameter whose gradient the gathering pass may touch (optimizer parameters and
        trainable model parameters), each once. Their ``.grad`` is saved and restored.

    Examples
    --------
    >>> groups = [{"params": [torch.nn.Parameter(torch.ones(2, 3))]}]
    >>> select(groups, None, lambd=0.3, granularity="kernel").targets[0].name
    'param[0]'
    """

    targets: list[Target]
    skipped: dict[str, str]
    trainable: list[Tensor]


def check_group(
    group: Mapping[str, Any], index: int | str = "new", owned: Collection[str] = ()
) -> None:
    """Validate the DASH keys of one param group, or raise naming the group.

    Parameters
    ----------
    group:
        The param group.
    index:
        Its index, for the message.
    owned:
        Keys the wrapped optimizer itself keeps in its groups (its ``defaults``): a former DASH
        key among them (ASGD's ``"lambd"``) belongs to the optimizer and is left alone.

    Raises
    ------
    TypeError, ValueError
        For a bad value, or a DASH key under its former name.

    Examples
    --------
    >>> check_group({"params": [], "dash_lambd": 0.5})
    >>> check_group({"params": [], "lambd": 1e-4}, owned={"lr", "lambd"})   # ASGD's own lambd
    >>> check_group({"params": [], "lambd": 0.5})
    Traceback (most recent call last):
    ...
    ValueError: param group new: the per-group DASH floor is now the key "dash_lambd" ...
    """
    try:
        for old, new in RENAMED_GROUP_KEYS.items():
            if old in group and old not in owned:
                what = "floor" if old == "lambd" else "granularity"
                raise ValueError(
                    f'the per-group DASH {what} is now the key "{new}" (the key "{old}" is refused: '
                    f"optimizers such as torch.optim.ASGD keep their own \"lambd\" in every group); "
                    f'rename "{old}" to "{new}" in this param group'
                )
        if "dash" in group:
            check_bool('"dash"', group["dash"])
        if "dash_lambd" in group:
            check_lambd(group["dash_lambd"], where='"dash_lambd"')
        if "dash_granularity" in group:
            check_choice("granularity", group["dash_granularity"], GRANULARITIES)
    except (TypeError, ValueError) as err:
        raise type(err)(f"param group {index}: {err}") from None


def migrate_group_keys(group: Mapping[str, Any], owned: Collection[str] = ()) -> dict[str, Any]:
    """Rename the former DASH keys of a saved param group (a checkpoint of version 0.1.0).

    Parameters
    ----------
    group:
        A param group of a saved ``state_dict``.
    owned:
        Keys the optimizer itself keeps in its groups (see :func:`check_group`): they are not
        renamed.

    Returns
    -------
    dict
        A copy of ``group`` with ``"lambd"`` and ``"granularity"`` renamed ``"dash_lambd"`` and
        ``"dash_granularity"`` (:data:`RENAMED_GROUP_KEYS`), where the new key is absent.

    Examples
    --------
    >>> migrate_group_keys({"params": [0], "lambd": 0.5})
    {'params': [0], 'dash_lambd': 0.5}
    >>> migrate_group_keys({"params": [0], "lambd": 1e-4}, owned={"lambd"})   # ASGD's own lambd
    {'params': [0], 'lambd': 0.0001}
    """
    out = dict(group)
    for old, new in RENAMED_GROUP_KEYS.items():
        if old in out and old not in owned and new not in out:
            out[new] = out.pop(old)
    return out


def check_patterns(value: Any, name: str) -> tuple[str, ...] | None:
    """Return ``include=``/``exclude=`` patterns as a tuple of str (``None`` stays ``None``), or raise.

    Parameters
    ----------
    value:
        ``None``, a glob pattern, or a sequence of them.
    name:
        ``"include"`` or ``"exclude"``, for the message.

    Returns
    -------
    tuple of str or None
        The patterns.

    Raises
    ------
    TypeError
        For anything but a str or a sequence of str.
    ValueError
        For an empty ``include`` (it would select nothing; ``None`` selects everything).

    Examples
    --------
    >>> check_patterns("lm_head*", "exclude")
    ('lm_head*',)
    >>> check_patterns(["*.attn.*", "*.mlp.*"], "include")
    ('*.attn.*', '*.mlp.*')
    """
    if value is None:
        return None
    if isinstance(value, str):
        value = (value,)
    elif isinstance(value, (Sequence, set, frozenset)) and not isinstance(value, (bytes, bytearray)):
        value = tuple(value)
    else:
        raise TypeError(
            f"{name}= takes a glob pattern (str) or a sequence of them, e.g. {name}=['lm_head*']; "
            f"got {type(value).__name__}"
        )
    bad = [p for p in value if not isinstance(p, str)]
    if bad:
        raise TypeError(f"{name}= patterns must be str (fnmatch globs over parameter names); got {bad[0]!r}")
    if name == "include" and not value:
        raise ValueError(
            "include=[] selects no parameter; pass None (the default) to consider every parameter, or the "
            "patterns of the parameters to shrink"
        )
    return value


def _matches(pattern: str, names: Sequence[str]) -> bool:
    """Whether ``pattern`` matches one of the names, or the name of a module that holds the tensor."""
    for name in names:
        if fnmatch.fnmatchcase(name, pattern):
            return True
        parts = name.split(".")
        if any(fnmatch.fnmatchcase(".".join(parts[:k]), pattern) for k in range(1, len(parts))):
            return True
    return False


def _check_patterns_match(patterns: Sequence[str], kind: str, all_names: list[list[str]]) -> None:
    """Refuse a pattern that matches none of the optimizer's parameters, naming some that exist."""
    for pattern in patterns:
        if any(_matches(pattern, names) for names in all_names):
            continue
        flat = [n for names in all_names for n in names]
        modules = sorted({".".join(n.split(".")[:k]) for n in flat for k in range(1, n.count(".") + 1)})
        close = difflib.get_close_matches(pattern, flat + modules, n=3, cutoff=0.6)
        shown = ", ".join(repr(n) for n in flat[:5]) + (", ..." if len(flat) > 5 else "")
        hint = f"; close names: {', '.join(map(repr, close))}" if close else ""
        raise ValueError(
            f"{kind}={pattern!r} matches no parameter of the optimizer (nor a module holding one); its "
            f"{len(flat)} parameters are named like {shown}{hint}. Patterns are fnmatch globs over those names "
            "or their module names ('*' also matches dots), e.g. 'lm_head', '*.attn.*' or '*norm*'"
        )


def _describe_owner(name: str, module: nn.Module) -> str:
    return f"{name or '<the model>'} ({type(module).__name__})"


def _unit_plan(
    owners: list[tuple[str, nn.Module, str]],
    granularity: str,
    rules: Mapping[int, Mapping[str, Units | str] | None],
) -> tuple[tuple[tuple[int, ...], int] | None, str | None]:
    """``((dims, groups), None)`` if every owner shrinks the tensor with the same units, else ``(None, reason)``."""
    plans: list[tuple[str, nn.Module, tuple[tuple[int, ...], int] | None, str]] = []
    for mname, module, attr in owners:
        rule = rules.get(id(module))
        spec = rule.get(attr) if rule is not None else None
        if isinstance(spec, Units):
            ndim = module._parameters[attr].ndim  # type: ignore[union-attr]
            plans.append((mname, module, spec.dims(ndim, granularity), ""))
        elif rule is None:
            plans.append((mname, module, None, NO_RULE))
        else:
            plans.append((mname, module, None, spec or f"not named by the unit rule of {type(module).__name__}"))
    shrinking = [p for p in plans if p[2] is not None]
    if len(plans) == 1:
        return plans[0][2], (plans[0][3] or None)
    if not shrinking:
        return None, plans[0][3]
    if len(shrinking) < len(plans):
        keep = " and ".join(_describe_owner(m, mod) for m, mod, lay, _ in plans if lay is not None)
        other = " and ".join(_describe_owner(m, mod) for m, mod, lay, _ in plans if lay is None)
        return None, (
            f"tied weight: shared by {keep} and by {other}, which does not shrink it; a weight shared with a "
            "module that is not shrunk is left alone"
        )
    layouts = {p[2] for p in shrinking}
    if len(layouts) > 1:
        each = " and ".join(f"{_describe_owner(m, mod)}, units over dims {lay[0]}" for m, mod, lay, _ in shrinking)
        return None, (
            f"tied weight: shared by {each}, whose units differ; a tied weight is shrunk only when all its "
            "modules split it into the same units"
        )
    return shrinking[0][2], None


def select(
    param_groups: Iterable[Mapping[str, Any]],
    model: nn.Module | None,
    *,
    lambd: float,
    granularity: str,
    owned: Collection[str] = (),
    include: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None,
    unit_rules: Mapping[type[nn.Module] | str, UnitRule] | None = None,
) -> Selection:
    """Decide which of the optimizer's parameters to shrink, and their units.

    Parameters
    ----------
    param_groups:
        The optimizer's param groups; their DASH keys override ``lambd`` and ``granularity``.
    model:
        The model that owns the parameters, or ``None`` for the shape rule.
    lambd, granularity:
        The wrapper's settings.
    owned:
        Keys the optimizer keeps in its groups (see :func:`check_group`).
    include, exclude:
        Glob patterns over the parameters' qualified names (see the module's description):
        only parameters matching ``include`` are shrunk (``None``: all), never those matching
        ``exclude``.
    unit_rules:
        Unit rules that add to or override the registered ones, by module type or qualified
        class name (see :func:`~torch_dash_optim.units.register_unit_rule`).

    Returns
    -------
    Selection
        The parameters to shrink with their units and λ, the parameters left alone with the
        reason, and every trainable parameter whose gradient the gathering pass may touch.

    Raises
    ------
    ValueError
        If an optimizer parameter is not a parameter of ``model``, a parameter is lazy (not
        yet initialised), a group key is invalid, or a pattern matches no parameter.

    Examples
    --------
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    >>> sel = select([{"params": list(model.parameters())}], model, lambd=0.3, granularity="kernel")
    >>> [(t.name, t.dims) for t in sel.targets]
    [('0.weight', (1,)), ('0.bias', (0,))]
    >>> sel.skipped
    {'1.weight': 'not a Conv/Linear parameter', '1.bias': 'not a Conv/Linear parameter'}
    >>> select([{"params": list(model.parameters())}], model, lambd=0.3, granularity="kernel",
    ...        exclude="0.bias").skipped["0.bias"]
    "excluded by exclude=['0.bias']"
    """
    include = check_patterns(include, "include")
    exclude = check_patterns(exclude, "exclude")
    overrides = check_unit_rules(unit_rules)
    found = _names(model) if model is not None else _Names({}, {}, {}, {})
    rules: dict[int, Mapping[str, Units | str] | None] = {}
    parametrized: set[int] = set()
    if model is not None:
        for _, _, module in _walk(model):
            if id(module) in rules:
                continue
            rule = unit_rule_for(module, overrides)
            rules[id(module)] = rule
            for attr in rule or ():
                if parametrize.is_parametrized(module, attr):
                    parametrized.update(id(p) for p in module.parametrizations[attr].parameters())
    groups = list(param_groups)
    seen: set[int] = set()
    candidates: list[tuple[int, Tensor, Mapping[str, Any], str, list[str]]] = []
    trainable: list[Tensor] = []
    ordinal = 0
    for g, group in enumerate(groups):
        check_group(group, g, owned)
        for p in group["params"]:
            index, ordinal = ordinal, ordinal + 1
            if id(p) in seen:
                continue
            seen.add(id(p))
            if isinstance(p, nn.parameter.UninitializedParameter):
                raise ValueError(
                    f"parameter {index} of the optimizer (group {g}) is a lazy parameter that is not yet "
                    "initialised (a Lazy* module); run one forward pass (e.g. model(sample_batch)) before "
                    "wrapping the optimizer or calling on_new_data"
                )
            if model is not None and id(p) not in found.names:
                raise ValueError(
                    f"parameter {index} of the optimizer (group {g}, shape {tuple(p.shape)}) is not a "
                    "parameter of the model; pass the model whose parameters the optimizer updates, "
                    "or model=None to select by shape"
                )
            names = found.names.get(id(p), [f"param[{index}]"])
            if p.requires_grad:
                trainable.append(p)
            candidates.append((index, p, group, names[0], names))
    for patterns, kind in ((include, "include"), (exclude, "exclude")):
        if patterns:
            _check_patterns_match(patterns, kind, [c[4] for c in candidates])
    targets: list[Target] = []
    skipped: dict[str, str] = {}
    for _, p, group, name, names in candidates:
        gran = group.get("dash_granularity", granularity)
        reason = _filter_reason(group, names, include, exclude) or _skip_reason(p, parametrized, model is not None)
        layout: tuple[tuple[int, ...], int] | None = None
        if reason is None and model is not None:
            layout, reason = _unit_plan(found.owners[id(p)], gran, rules)
        if reason is not None:
            skipped[name] = reason
            continue
        if layout is None:  # the shape rule
            layout = (unit_dims(p.ndim, gran), 1)
        targets.append(Target(name, p, layout[0], float(group.get("dash_lambd", lambd)), layout[1]))
    if model is not None:
        for key, names in found.names.items():
            if key not in seen:
                seen.add(key)
                p = found.tensors[key]
                skipped[names[0]] = "not in the optimizer"
                if p.requires_grad:
                    trainable.append(p)
    return Selection(targets, skipped, trainable)


def _filter_reason(
    group: Mapping[str, Any], names: Sequence[str], include: Sequence[str] | None, exclude: Sequence[str] | None
) -> str | None:
    if not group.get("dash", True):
        return 'excluded by its param group ("dash": False)'
    hits = [pat for pat in exclude or () if _matches(pat, names)]
    if hits:
        return f"excluded by exclude={hits!r}"
    if include is not None and not any(_matches(pat, names) for pat in include):
        return f"not matched by include={list(include)!r}"
    return None


def _skip_reason(p: Tensor, parametrized: set[int], has_model: bool) -> str | None:
    if not p.requires_grad:
        return "frozen (requires_grad=False)"
    if id(p) in parametrized:
        return (
            "original of a parametrized weight (torch.nn.utils.parametrize: weight_norm, spectral_norm, "
            "orthogonal, ...): the weight is recomputed from it, so it is left alone"
        )
    if p.numel() == 0:
        return "empty (no elements)"
    if p.is_complex():
        return "complex dtype (DASH's cosine is defined for real weights)"
    if not has_model and p.ndim < 2:
        return "1-D parameter without a model (bias or norm scale: left alone)"
    return None
