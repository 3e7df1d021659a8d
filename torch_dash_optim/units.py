"""Unit rules: how DASH splits the parameters of each module type into units.

**With a model**, every module type has a *unit rule*: for each of its parameters, which
dimension indexes the units (the output channels), or that the parameter is left alone;
:func:`~torch_dash_optim.selection.select` applies them to the modules of the model. The rules
that come with the library:

============================================  ==========================================================
module                                        units
============================================  ==========================================================
``nn.Linear``, ``nn.Conv1d/2d/3d``            ``weight`` ``(out, in, ...)``: dim 0, split by the
                                              granularity (:func:`~torch_dash_optim.functional.unit_dims`);
                                              ``bias``: one unit
``nn.ConvTranspose1d/2d/3d``                  ``weight`` ``(in, out/groups, ...)``: the output
                                              channel (dim 1, within each group); ``bias``: one unit
transformers' ``Conv1D`` (GPT-2)              ``weight`` stored ``(in, out)``: its columns; ``bias``:
                                              one unit, as for ``nn.Linear``
``nn.MultiheadAttention``                     ``in_proj_weight``: rows, ``in_proj_bias``: its q, k and v
                                              thirds, one unit each, as three separate q, k, v
                                              ``nn.Linear`` would be; ``q/k/v_proj_weight`` (when
                                              ``kdim``/``vdim`` differ): rows; ``out_proj`` is an
                                              ``nn.Linear``; ``bias_k``/``bias_v`` are left alone
``nn.Embedding``                              rows, **opt-in only** (:data:`EMBEDDING_ROWS`)
============================================  ==========================================================

Subclasses inherit their base's rule (the most derived registered type wins). Every other
parameter (norm layers, embeddings, positional tables, ...) is left alone, with the reason
``"not a Conv/Linear parameter"``. transformers' ``Conv1D`` is recognised by its qualified class
name, so transformers is never imported. :func:`register_unit_rule` adds a rule for a module
type of your own (or replaces one), for every wrapper; the ``unit_rules=`` argument of
:class:`~torch_dash_optim.DASHWrapper` adds or replaces rules for one wrapper, e.g.
``unit_rules={nn.Embedding: EMBEDDING_ROWS}`` to shrink embedding rows.

``bias_k``/``bias_v`` of ``nn.MultiheadAttention`` (``add_bias_kv=True``) are a learned key and
value appended to the sequence: an extra token that every query can attend to, not the bias of
a unit's output, so no unit of the layer owns them.

**Tied weights.** A parameter used by several modules (``lm_head.weight = wte.weight``) is
shrunk only if every module that uses it shrinks it with the same units; otherwise it is left
alone, and the report names its modules. So the tied embedding and head of a causal language
model are left alone by default (the embedding has no rule). With :data:`EMBEDDING_ROWS`, both
owners split the table ``(vocab, dim)`` by rows, and the tied table is shrunk by rows, once.

**Without a model** (``model=None``) no rule applies: only shapes are known, and every parameter
with at least two dimensions is treated as a Conv/Linear weight (a 2-D tensor as a Linear weight
``(out, in)``, a tensor of three or more dimensions as a Conv weight); 1-D parameters are left
alone, because a bias cannot be told from a norm layer's scale by its shape. A shape cannot tell
an ``(in, out)`` layout (transformers' ``Conv1D``, ``ConvTranspose``) from ``(out, in)`` either,
nor an embedding table from a Linear weight: pass ``model=`` for such models, or leave those
tensors out with a param group of their own and ``"dash": False``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from .functional import unit_dims

__all__ = [
    "EMBEDDING_ROWS",
    "SHRINKABLE_MODULES",
    "UnitRule",
    "Units",
    "check_unit_rules",
    "register_unit_rule",
    "unit_rule_for",
    "unregister_unit_rule",
]

#: The Conv/Linear module types of the authors' rule. The unit rules cover more (see the
#: module's description and :func:`unit_rule_for`); this tuple is kept for code that asks
#: "is this a Conv or Linear layer".
SHRINKABLE_MODULES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)

#: The reason given for a parameter that no unit rule shrinks.
NO_RULE = "not a Conv/Linear parameter"


@dataclass(frozen=True)
class Units:
    """How one parameter of a module is split into units.

    Parameters
    ----------
    axis:
        The dimension that indexes the units, the output channels: ``0`` for weights stored
        ``(out, in, ...)`` (``nn.Linear``, ``nn.Conv2d``), ``1`` for weights stored
        ``(in, out, ...)`` (``nn.ConvTranspose2d``, transformers' ``Conv1D``). ``None``: the
        whole tensor is one unit, whatever the granularity (a bias). The granularity then
        picks the unit (see :func:`torch_dash_optim.functional.unit_dims`).
    stacked:
        Dim 0 stacks this many separate layers of equal size, each split into units as if it
        were a parameter of its own: ``nn.MultiheadAttention``'s ``in_proj_weight`` and
        ``in_proj_bias`` stack the q, k and v projections (``stacked=3``).
    groups:
        For a weight of a grouped layer whose output channel is indexed by a block of dim 0
        *and* by ``axis`` (``nn.ConvTranspose2d(groups=g)``: weight ``(in, out/g, k, k)``): the
        number of those blocks, so that a unit never mixes two output channels. It does not
        change the units under ``granularity="tensor"``.

    Examples
    --------
    >>> Units(axis=1).dims(2, "kernel")   # a weight stored (in, out): one unit per column
    ((0,), 1)
    >>> Units(axis=None, stacked=3).dims(1, "kernel")   # in_proj_bias: its q, k and v thirds
    ((0,), 3)
    """

    axis: int | None = 0
    stacked: int = 1
    groups: int = 1

    def __post_init__(self) -> None:
        if self.axis is not None and (isinstance(self.axis, bool) or not isinstance(self.axis, int)):
            raise TypeError(f"axis must be an int or None; got {self.axis!r}")
        for name in ("stacked", "groups"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int; got {value!r}")

    def dims(self, ndim: int, granularity: str) -> tuple[tuple[int, ...], int]:
        """The dimensions reduced per unit of a tensor of ``ndim`` dimensions, and its blocks of dim 0.

        Parameters
        ----------
        ndim:
            Number of dimensions of the parameter.
        granularity:
            ``"kernel"``, ``"neuron"`` or ``"tensor"``.

        Returns
        -------
        tuple
            ``(dims, groups)``, as taken by :func:`torch_dash_optim.functional.dash_factors`.
        """
        dims = unit_dims(ndim, granularity, axis=self.axis)
        if 0 not in dims:
            return dims, 1
        return dims, self.stacked * (self.groups if granularity != "tensor" else 1)


#: The type of a unit rule. It maps each parameter name of the module (as in
#: ``module._parameters``) to its :class:`Units`, or to a string that says why that parameter
#: is left alone; or it is a function of the module that returns such a mapping (for rules that
#: depend on the module, as ``groups`` does). A parameter the rule does not name is left alone.
UnitRule = Mapping[str, Units | str] | Callable[[nn.Module], Mapping[str, Units | str]]

_WEIGHT_AND_BIAS: Mapping[str, Units | str] = {"weight": Units(axis=0), "bias": Units(axis=None)}
_COLUMNS_AND_BIAS: Mapping[str, Units | str] = {"weight": Units(axis=1), "bias": Units(axis=None)}
_BIAS_KV = (
    "a learned key/value appended to the sequence (add_bias_kv=True), an extra token rather than the bias "
    "of a unit: left alone"
)

#: The rule of ``nn.Embedding`` (and ``nn.EmbeddingBag``): one unit per row. Not used unless
#: asked for, with ``DASHWrapper(..., unit_rules={nn.Embedding: EMBEDDING_ROWS})`` or
#: :func:`register_unit_rule`.
EMBEDDING_ROWS: Mapping[str, Units | str] = {"weight": Units(axis=0)}


def _conv_transpose_rule(module: nn.Module) -> Mapping[str, Units | str]:
    """``nn.ConvTranspose*d``: the output channels (dim 1), kept apart per group."""
    return {"weight": Units(axis=1, groups=int(getattr(module, "groups", 1))), "bias": Units(axis=None)}


def _attention_rule(module: nn.Module) -> Mapping[str, Units | str]:
    """``nn.MultiheadAttention``: rows of its projections, the fused q/k/v ones as three layers."""
    return {
        "in_proj_weight": Units(axis=0, stacked=3),
        "in_proj_bias": Units(axis=None, stacked=3),
        "q_proj_weight": Units(axis=0),
        "k_proj_weight": Units(axis=0),
        "v_proj_weight": Units(axis=0),
        "bias_k": _BIAS_KV,
        "bias_v": _BIAS_KV,
    }


_RULES: dict[type | str, UnitRule] = {
    nn.Linear: _WEIGHT_AND_BIAS,
    nn.Conv1d: _WEIGHT_AND_BIAS,
    nn.Conv2d: _WEIGHT_AND_BIAS,
    nn.Conv3d: _WEIGHT_AND_BIAS,
    nn.ConvTranspose1d: _conv_transpose_rule,
    nn.ConvTranspose2d: _conv_transpose_rule,
    nn.ConvTranspose3d: _conv_transpose_rule,
    nn.MultiheadAttention: _attention_rule,
    "transformers.pytorch_utils.Conv1D": _COLUMNS_AND_BIAS,
}


def _check_key(module_type: Any) -> type | str:
    """A rule's key, a module class or a qualified class name, or raise."""
    if isinstance(module_type, type) and issubclass(module_type, nn.Module):
        return module_type
    if isinstance(module_type, str) and "." in module_type:
        return module_type
    raise TypeError(
        "a unit rule is registered for a torch.nn.Module subclass, or for its qualified class name "
        f"('package.module.ClassName', to avoid importing the package); got {module_type!r}"
    )


def _check_rule(rule: Any, where: str) -> Mapping[str, Units | str]:
    """A rule's mapping, each parameter name to :class:`Units` or a reason, or raise."""
    if not isinstance(rule, Mapping):
        raise TypeError(
            f"the unit rule of {where} must be a mapping of parameter names to Units (or to a reason string), "
            f"or a function of the module that returns one; got {type(rule).__name__}"
        )
    for name, spec in rule.items():
        if not isinstance(name, str) or not isinstance(spec, (Units, str)):
            raise TypeError(
                f"the unit rule of {where} maps {name!r} to {spec!r}; map each parameter name (a str) to "
                "Units(axis=...) or to a string saying why it is left alone"
            )
    return rule


def register_unit_rule(module_type: type[nn.Module] | str, rule: UnitRule) -> None:
    """Say how DASH splits the parameters of a module type into units, for every wrapper.

    Parameters
    ----------
    module_type:
        The module class (its subclasses inherit the rule unless they have their own), or its
        qualified name ``"package.module.ClassName"``, which matches without importing the
        package (this is how transformers' ``Conv1D`` is recognised).
    rule:
        A mapping of the module's parameter names (as in ``module._parameters``) to
        :class:`Units`, or to a string saying why that parameter is left alone; or a function
        ``rule(module)`` that returns such a mapping, for rules that depend on the module's
        settings. Parameters the rule does not name are left alone, so ``{}`` keeps DASH off
        a module type (a subclass of ``nn.Linear`` that must not be shrunk, say).

    Raises
    ------
    TypeError
        For a ``module_type`` that is not a module class or a qualified name, or a malformed
        mapping.

    Notes
    -----
    A rule registered here replaces any earlier rule of that exact type (built-in ones
    included), and applies to every wrapper built or called afterwards;
    :func:`unregister_unit_rule` removes it. To change the rules of one wrapper only, pass
    ``unit_rules={module_type: rule}`` to :class:`~torch_dash_optim.DASHWrapper`.

    Examples
    --------
    A layer that stores its weight ``(in, out)``, as ``x @ weight + bias``:

    >>> from torch import nn
    >>> from torch_dash_optim.selection import select
    >>> from torch_dash_optim.units import Units, register_unit_rule, unregister_unit_rule
    >>> class InOut(nn.Module):
    ...     def __init__(self, n_in, n_out):
    ...         super().__init__()
    ...         self.weight = nn.Parameter(torch.randn(n_in, n_out))
    ...         self.bias = nn.Parameter(torch.zeros(n_out))
    ...     def forward(self, x):
    ...         return x @ self.weight + self.bias
    >>> register_unit_rule(InOut, {"weight": Units(axis=1), "bias": Units(axis=None)})
    >>> model = nn.Sequential(InOut(3, 4))
    >>> sel = select([{"params": list(model.parameters())}], model, lambd=0.3, granularity="kernel")
    >>> [(t.name, t.dims) for t in sel.targets]   # one unit per column, the bias one unit
    [('0.weight', (0,)), ('0.bias', (0,))]
    >>> _ = unregister_unit_rule(InOut)   # put things back as they were
    """
    key = _check_key(module_type)
    _RULES[key] = _check_rule_or_function(rule, _describe_key(key))


def unregister_unit_rule(module_type: type[nn.Module] | str) -> UnitRule | None:
    """Remove the rule registered for exactly this module type (its base's rule applies again).

    Parameters
    ----------
    module_type:
        The module class or its qualified name, as given to :func:`register_unit_rule`.

    Returns
    -------
    UnitRule or None
        The rule removed, or ``None`` if that type had none of its own.

    Examples
    --------
    >>> unregister_unit_rule(torch.nn.LayerNorm) is None   # norm layers have no rule
    True
    """
    return _RULES.pop(_check_key(module_type), None)


def _check_rule_or_function(rule: Any, where: str) -> UnitRule:
    """A rule: a checked mapping, or a function of the module (checked when it is called)."""
    if isinstance(rule, Mapping):
        return _check_rule(rule, where)
    if callable(rule):
        return rule
    raise TypeError(
        f"the unit rule of {where} must be a mapping of parameter names to Units (or to a reason string), "
        f"or a function of the module that returns one; got {type(rule).__name__}"
    )


def _describe_key(key: type | str) -> str:
    """A rule's key by its qualified name, for messages."""
    return key if isinstance(key, str) else f"{key.__module__}.{key.__qualname__}"


def _lookup(module: nn.Module, overrides: Mapping[type | str, UnitRule]) -> UnitRule | None:
    """The rule of the most derived registered type of ``module`` (per-wrapper overrides first at each level)."""
    for cls in type(module).__mro__:
        name = f"{cls.__module__}.{cls.__qualname__}"
        for table in (overrides, _RULES):
            for key in (cls, name):
                if key in table:
                    return table[key]
    return None


def check_unit_rules(unit_rules: Any) -> dict[type | str, UnitRule]:
    """Return per-wrapper ``unit_rules=`` as a dict, checking its keys and rules, or raise.

    Parameters
    ----------
    unit_rules:
        ``None``, or a mapping of module types (or qualified class names) to unit rules (see
        :func:`register_unit_rule`).

    Returns
    -------
    dict
        The rules (empty for ``None``).

    Raises
    ------
    TypeError
        For a key that is not a module type or a qualified name, or a malformed rule.

    Examples
    --------
    >>> list(check_unit_rules({torch.nn.Embedding: EMBEDDING_ROWS}))
    [<class 'torch.nn.modules.sparse.Embedding'>]
    """
    if unit_rules is None:
        return {}
    if not isinstance(unit_rules, Mapping):
        raise TypeError(
            "unit_rules must be a mapping of module types to unit rules, e.g. "
            f"unit_rules={{torch.nn.Embedding: EMBEDDING_ROWS}}; got {type(unit_rules).__name__}"
        )
    out: dict[type | str, UnitRule] = {}
    for key, rule in unit_rules.items():
        key = _check_key(key)
        out[key] = _check_rule_or_function(rule, _describe_key(key))
    return out


def unit_rule_for(
    module: nn.Module, unit_rules: Mapping[type[nn.Module] | str, UnitRule] | None = None
) -> Mapping[str, Units | str] | None:
    """The unit rule that applies to ``module``, resolved for that module.

    Parameters
    ----------
    module:
        A module.
    unit_rules:
        Rules that override the registered ones (as ``DASHWrapper(..., unit_rules=...)``).

    Returns
    -------
    Mapping or None
        Per parameter name, its :class:`Units` or the reason it is left alone; ``None`` if no
        rule applies (no parameter of the module is shrunk).

    Examples
    --------
    >>> unit_rule_for(torch.nn.Linear(2, 3))["weight"]
    Units(axis=0, stacked=1, groups=1)
    >>> unit_rule_for(torch.nn.LayerNorm(3)) is None
    True
    """
    rule = _lookup(module, check_unit_rules(unit_rules))
    if rule is None:
        return None
    if not isinstance(rule, Mapping):
        rule = rule(module)
    return _check_rule(rule, type(module).__name__)
