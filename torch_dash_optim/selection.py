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
``"lambd"`` and ``"granularity"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from ._checks import check_bool, check_choice, check_lambd
from .functional import GRANULARITIES, unit_dims

__all__ = ["GROUP_KEYS", "SHRINKABLE_MODULES", "Selection", "Target", "check_group", "select"]

#: Module types whose weight and bias are shrunk when a model is given.
SHRINKABLE_MODULES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)

#: Param-group keys that override the wrapper's settings for that group.
GROUP_KEYS: tuple[str, ...] = ("dash", "lambd", "granularity")

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


def check_group(group: Mapping[str, Any], index: int | str = "new") -> None:
    """Validate the DASH keys of one param group, or raise naming the group.

    Examples
    --------
    >>> check_group({"params": [], "lambd": 0.5})
    >>> check_group({"params": [], "granularity": "row"})
    Traceback (most recent call last):
    ...
    ValueError: param group new: unknown granularity 'row'; use one of 'kernel', 'neuron', 'tensor'
    """
    try:
        if "dash" in group:
            check_bool('"dash"', group["dash"])
        if "lambd" in group:
            check_lambd(group["lambd"], where='"lambd"')
        if "granularity" in group:
            check_choice("granularity", group["granularity"], GRANULARITIES)
    except (TypeError, ValueError) as err:
        raise type(err)(f"param group {index}: {err}") from None


def _strip(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if name.startswith(prefix):
                name, changed = name[len(prefix) :], True
        name = name.replace("._orig_mod.", ".")
    return name


def _kinds_from_model(model: nn.Module) -> tuple[dict[int, str], dict[int, str]]:
    """Map id(param) -> qualified name, and id(param) -> "weight"/"bias" for shrinkable ones."""
    names: dict[int, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), _strip(name))
    kinds: dict[int, str] = {}
    for module in model.modules():
        if isinstance(module, SHRINKABLE_MODULES):
            for kind in ("weight", "bias"):
                p = getattr(module, kind, None)
                if isinstance(p, Tensor):
                    kinds.setdefault(id(p), kind)
    return names, kinds


def select(
    param_groups: Iterable[Mapping[str, Any]],
    model: nn.Module | None,
    *,
    lambd: float,
    granularity: str,
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

    Returns
    -------
    Selection

    Raises
    ------
    ValueError
        If an optimizer parameter is not a parameter of ``model``, or a group key is invalid.

    Examples
    --------
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    >>> sel = select([{"params": list(model.parameters())}], model, lambd=0.3, granularity="kernel")
    >>> [(t.name, t.dims) for t in sel.targets]
    [('0.weight', (1,)), ('0.bias', (0,))]
    >>> sel.skipped
    {'1.weight': 'not a Conv/Linear parameter', '1.bias': 'not a Conv/Linear parameter'}
    """
    names, kinds = _kinds_from_model(model) if model is not None else ({}, {})
    seen: set[int] = set()
    targets: list[Target] = []
    skipped: dict[str, str] = {}
    trainable: list[Tensor] = []
    ordinal = 0
    for g, group in enumerate(param_groups):
        check_group(group, g)
        for p in group["params"]:
            index, ordinal = ordinal, ordinal + 1
            if id(p) in seen:
                continue
            seen.add(id(p))
            if model is not None and id(p) not in names:
                raise ValueError(
                    f"parameter {index} of the optimizer (group {g}, shape {tuple(p.shape)}) is not a "
                    "parameter of the model; pass the model whose parameters the optimizer updates, "
                    "or model=None to select by shape"
                )
            name = names.get(id(p), f"param[{index}]")
            if p.requires_grad:
                trainable.append(p)
            reason = _skip_reason(p, group, kinds, model is not None)
            if reason is not None:
                skipped[name] = reason
                continue
            gran = group.get("granularity", granularity)
            dims = unit_dims(p.ndim, gran if kinds.get(id(p), "weight") == "weight" else "tensor")
            targets.append(Target(name, p, dims, float(group.get("lambd", lambd))))
    if model is not None:
        for name, p in model.named_parameters():
            if id(p) not in seen:
                seen.add(id(p))
                skipped[_strip(name)] = "not in the optimizer"
                if p.requires_grad:
                    trainable.append(p)
    return Selection(targets, skipped, trainable)


def _skip_reason(p: Tensor, group: Mapping[str, Any], kinds: dict[int, str], has_model: bool) -> str | None:
    if not group.get("dash", True):
        return 'excluded by its param group ("dash": False)'
    if not p.requires_grad:
        return "frozen (requires_grad=False)"
    if has_model and id(p) not in kinds:
        return "not a Conv/Linear parameter"
    if not has_model and p.ndim < 2:
        return "1-D parameter without a model (bias or norm scale: left alone)"
    return None
