"""Qualified names: parameters and modules named as DASH reports them, across wrapper modules.

Parameters are named as ``model.named_parameters()`` names them, without the levels that wrapper
modules add: ``DistributedDataParallel``'s and ``DataParallel``'s ``module.``,
:func:`torch.compile`'s ``_orig_mod.``, :class:`torch.optim.swa_utils.AveragedModel`'s
``module.`` and activation checkpointing's ``_checkpoint_wrapped_module.``. They are recognised by
their type, never by their names, so a child that happens to be called ``module`` keeps its name.
A tensor used in several places (a tied weight) is named once, by its first name; distinct tensors
whose names would collide once the wrapper levels are dropped keep their full names.

:func:`qualified_names` gives every parameter (and buffer) by that name, :func:`qualified_modules`
every module; :func:`~torch_dash_optim.selection.select` and the report
(:meth:`DASHReport.apply_to <torch_dash_optim.DASHReport.apply_to>`) name parameters the same way.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass

from torch import Tensor, nn

__all__ = ["qualified_modules", "qualified_names"]

#: Wrapper module types, by (module, class name), and the attribute that holds the wrapped module.
_WRAPPERS: tuple[tuple[str, str, str], ...] = (
    ("torch.nn.parallel.distributed", "DistributedDataParallel", "module"),
    ("torch.nn.parallel.data_parallel", "DataParallel", "module"),
    ("torch._dynamo.eval_frame", "OptimizedModule", "_orig_mod"),
    ("torch.optim.swa_utils", "AveragedModel", "module"),
    ("torch.distributed.algorithms._checkpoint.checkpoint_wrapper", "ActivationWrapper", "_checkpoint_wrapped_module"),
)


def _wrapped_attribute(module: nn.Module) -> str | None:
    """The attribute holding the wrapped module if ``module`` is a wrapper (DDP, compile, ...), decided by its type."""
    for mod_name, cls_name, attr in _WRAPPERS:
        mod = sys.modules.get(mod_name)  # a wrapper type whose module is not imported has no instance
        cls = getattr(mod, cls_name, None) if mod is not None else None
        if isinstance(cls, type) and isinstance(module, cls) and isinstance(module._modules.get(attr), nn.Module):
            return attr
    return None


def _walk(model: nn.Module) -> Iterator[tuple[str, str, nn.Module]]:
    """``(name, full name, module)`` of every module, pre-order and with repeats (as
    ``remove_duplicate=False``); ``name`` drops wrapper levels."""
    stack: list[tuple[str, str, nn.Module]] = [("", "", model)]
    while stack:
        name, full, module = stack.pop()
        yield name, full, module
        skip = _wrapped_attribute(module)
        children = []
        for child_name, child in module._modules.items():
            if child is None:
                continue
            child_full = f"{full}.{child_name}" if full else child_name
            child_short = name if child_name == skip else (f"{name}.{child_name}" if name else child_name)
            children.append((child_short, child_full, child))
        stack.extend(reversed(children))


def _join(prefix: str, name: str) -> str:
    """``prefix.name``, or ``name`` at the root."""
    return f"{prefix}.{name}" if prefix else name


@dataclass
class _Names:
    """The model's parameters by id: their names (first = the reported one) and their owners."""

    names: dict[int, list[str]]
    owners: dict[int, list[tuple[str, nn.Module, str]]]
    tensors: dict[int, Tensor]
    full: dict[int, str]  # the first name as named_parameters() gives it, wrapper levels included


def _names(model: nn.Module, buffers: bool = False) -> _Names:
    """Names without wrapper levels; distinct tensors whose short names collide keep their full names."""
    entries: list[tuple[Tensor, str, str, str, nn.Module, str]] = []
    for name, full, module in _walk(model):
        tables = [module._parameters] + ([module._buffers] if buffers else [])
        for table in tables:
            for attr, t in table.items():
                if t is not None:
                    entries.append((t, _join(name, attr), _join(full, attr), name, module, attr))
    holders: dict[str, set[int]] = {}
    for t, short, *_ in entries:
        holders.setdefault(short, set()).add(id(t))
    out = _Names({}, {}, {}, {})
    for t, short, full, mname, module, attr in entries:
        key = id(t)
        name = short if len(holders[short]) == 1 else full
        out.tensors.setdefault(key, t)
        out.full.setdefault(key, full)
        names = out.names.setdefault(key, [])
        if name not in names:
            names.append(name)
        owners = out.owners.setdefault(key, [])
        if not any(m is module and a == attr for _, m, a in owners):
            owners.append((mname, module, attr))
    return out


def qualified_names(module: nn.Module, *, buffers: bool = False) -> dict[str, Tensor]:
    """Every parameter (and buffer) of ``module`` by the name DASH reports it under.

    The names are those of ``module.named_parameters()`` without the levels that wrapper
    modules add, recognised by their type: ``DistributedDataParallel``, ``DataParallel`` and
    :class:`~torch.optim.swa_utils.AveragedModel` (``module.``), :func:`torch.compile`'s
    ``OptimizedModule`` (``_orig_mod.``) and activation checkpointing's wrapper
    (``_checkpoint_wrapped_module.``), at any depth. A child that is merely called ``module``
    keeps its name. A tensor used in several places appears once, under its first name.

    Parameters
    ----------
    module:
        The model, wrapped or not.
    buffers:
        Include the buffers too.

    Returns
    -------
    dict of str to Tensor
        In the order of ``named_parameters()`` (then of ``named_buffers()``).

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2))
    >>> list(qualified_names(torch.nn.DataParallel(net)))
    ['0.weight', '0.bias']
    >>> holder = torch.nn.Module()
    >>> holder.module = net            # a child called "module" is no wrapper
    >>> list(qualified_names(holder))
    ['module.0.weight', 'module.0.bias']
    """
    return {short: t for short, (_, t) in _named_with_full(module, buffers=buffers).items()}


def qualified_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every module of ``model`` by the name DASH gives it: wrapper levels dropped by type, first name of each.

    The root module is ``""``. A wrapper module (DDP, ``torch.compile``'s ``OptimizedModule``, ...)
    shares the name of the module it wraps, which is listed instead.

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2))
    >>> list(qualified_modules(torch.nn.DataParallel(net)))
    ['', '0']
    """
    out: dict[str, nn.Module] = {}
    seen: set[int] = set()
    for name, _, module in _walk(model):
        if id(module) in seen or _wrapped_attribute(module) is not None:
            continue
        seen.add(id(module))
        out.setdefault(name, module)
    return out


def _named_with_full(module: nn.Module, *, buffers: bool = False) -> dict[str, tuple[str, Tensor]]:
    """Short name -> (full name, tensor): parameters first, then buffers."""
    found = _names(module, buffers=buffers)
    order = sorted(found.names, key=lambda i: not isinstance(found.tensors[i], nn.Parameter))
    return {found.names[i][0]: (found.full[i], found.tensors[i]) for i in order}
