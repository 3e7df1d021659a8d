"""Which parameters DASH shrinks, and how each one is split into units.

With a model, the rule is the authors': the weight and bias of every ``Conv1d``/``Conv2d``/
``Conv3d`` and ``Linear`` module (subclasses included). Norm layers, embeddings and every other
parameter are left alone. Weights are split into units by the granularity (see
:func:`torch_dash_optim.functional.unit_dims`); a bias is always one unit.

Without a model (``model=None``) only shapes are known, and the rule is: every parameter with at
least two dimensions is treated as a Conv/Linear weight (a 2-D tensor as a Linear weight, a
tensor of three or more dimensions as a Conv weight); 1-D parameters are left alone, because a
bias cannot be told from a norm layer's scale by its shape. Exclude embeddings or other 2-D
tensors with a param group of their own and ``"dash": False``.

Param groups may override the wrapper's settings with the keys ``"dash"`` (bool),
``"dash_lambd"`` and ``"dash_granularity"``: names that no optimizer uses (``ASGD`` keeps its
own ``"lambd"`` in every group). The former keys ``"lambd"`` and ``"granularity"`` are refused
with an error that names the new key, except where the optimizer itself owns that key.

Some parameters are never shrunk, and are reported with the reason: parametrized weights
(:mod:`torch.nn.utils.parametrize`: ``weight_norm``, ``spectral_norm``, ``orthogonal``, whose
weight is recomputed from an unconstrained original that a shrink would not scale), empty
tensors, and complex tensors. Selection reads parameters from the modules' parameter
dictionaries, never through ``getattr``, so no parametrization runs and no buffer moves.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn
from torch.nn.utils import parametrize

from ._checks import check_bool, check_choice, check_lambd
from .functional import GRANULARITIES, unit_dims

__all__ = [
    "GROUP_KEYS",
    "RENAMED_GROUP_KEYS",
    "SHRINKABLE_MODULES",
    "Selection",
    "Target",
    "check_group",
    "migrate_group_keys",
    "select",
]

#: Module types whose weight and bias are shrunk when a model is given.
SHRINKABLE_MODULES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)

#: Param-group keys that override the wrapper's settings for that group.
GROUP_KEYS: tuple[str, ...] = ("dash", "dash_lambd", "dash_granularity")

#: Former spellings of the group keys, refused with an error that names the new one.
RENAMED_GROUP_KEYS: dict[str, str] = {"lambd": "dash_lambd", "granularity": "dash_granularity"}

# Prefixes that wrappers add to parameter names: torch.compile's OptimizedModule and DDP/DP.
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")


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

    Examples
    --------
    >>> Target("fc.weight", torch.zeros(4, 3), (1,), 0.3).dims
    (1,)
    """

    name: str
    param: Tensor
    dims: tuple[int, ...]
    lambd: float


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


def _strip(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if name.startswith(prefix):
                name, changed = name[len(prefix) :], True
        name = name.replace("._orig_mod.", ".")
    return name


def _kinds_from_model(model: nn.Module) -> tuple[dict[int, str], dict[int, str], set[int]]:
    """id -> qualified name, id -> "weight"/"bias" of shrinkable parameters, and ids of parametrized originals."""
    # Parameters are read from module._parameters and the parametrizations' originals, never with
    # getattr: under spectral_norm in train mode, module.weight runs a power iteration that moves
    # the _u/_v buffers.
    names: dict[int, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), _strip(name))
    kinds: dict[int, str] = {}
    parametrized: set[int] = set()
    for module in model.modules():
        if not isinstance(module, SHRINKABLE_MODULES):
            continue
        for kind in ("weight", "bias"):
            if parametrize.is_parametrized(module, kind):
                parametrized.update(id(p) for p in module.parametrizations[kind].parameters())
                continue
            p = module._parameters.get(kind)
            if isinstance(p, Tensor):
                kinds.setdefault(id(p), kind)
    return names, kinds, parametrized


def select(
    param_groups: Iterable[Mapping[str, Any]],
    model: nn.Module | None,
    *,
    lambd: float,
    granularity: str,
    owned: Collection[str] = (),
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

    Returns
    -------
    Selection
        The parameters to shrink with their units and λ, the parameters left alone with the
        reason, and every trainable parameter whose gradient the gathering pass may touch.

    Raises
    ------
    ValueError
        If an optimizer parameter is not a parameter of ``model``, a parameter is lazy (not
        yet initialised), or a group key is invalid.

    Examples
    --------
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    >>> sel = select([{"params": list(model.parameters())}], model, lambd=0.3, granularity="kernel")
    >>> [(t.name, t.dims) for t in sel.targets]
    [('0.weight', (1,)), ('0.bias', (0,))]
    >>> sel.skipped
    {'1.weight': 'not a Conv/Linear parameter', '1.bias': 'not a Conv/Linear parameter'}
    """
    names, kinds, parametrized = _kinds_from_model(model) if model is not None else ({}, {}, set())
    seen: set[int] = set()
    targets: list[Target] = []
    skipped: dict[str, str] = {}
    trainable: list[Tensor] = []
    ordinal = 0
    for g, group in enumerate(param_groups):
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
            if model is not None and id(p) not in names:
                raise ValueError(
                    f"parameter {index} of the optimizer (group {g}, shape {tuple(p.shape)}) is not a "
                    "parameter of the model; pass the model whose parameters the optimizer updates, "
                    "or model=None to select by shape"
                )
            name = names.get(id(p), f"param[{index}]")
            if p.requires_grad:
                trainable.append(p)
            reason = _skip_reason(p, group, kinds, parametrized, model is not None)
            if reason is not None:
                skipped[name] = reason
                continue
            gran = group.get("dash_granularity", granularity)
            dims = unit_dims(p.ndim, gran if kinds.get(id(p), "weight") == "weight" else "tensor")
            targets.append(Target(name, p, dims, float(group.get("dash_lambd", lambd))))
    if model is not None:
        for name, p in model.named_parameters():
            if id(p) not in seen:
                seen.add(id(p))
                skipped[_strip(name)] = "not in the optimizer"
                if p.requires_grad:
                    trainable.append(p)
    return Selection(targets, skipped, trainable)


def _skip_reason(
    p: Tensor, group: Mapping[str, Any], kinds: dict[int, str], parametrized: set[int], has_model: bool
) -> str | None:
    if not group.get("dash", True):
        return 'excluded by its param group ("dash": False)'
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
    if has_model and id(p) not in kinds:
        return "not a Conv/Linear parameter"
    if not has_model and p.ndim < 2:
        return "1-D parameter without a model (bias or norm scale: left alone)"
    return None
