"""What one :meth:`~torch_dash_optim.DASHWrapper.on_new_data` call did, parameter by parameter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from ._interrupts import deferred_interrupts
from .names import _named_with_full

__all__ = ["DASHReport", "ParamReport", "param_reports"]


@dataclass(frozen=True)
class ParamReport:
    """Factors of one shrunk parameter.

    Attributes
    ----------
    name:
        Module-qualified name (``"param[i]"`` without a model).
    shape:
        Shape of the parameter.
    units:
        Number of units, i.e. of factors.
    lambd:
        The floor used.
    min:
        Smallest factor.
    mean:
        Mean factor.
    max:
        Largest factor.
    at_floor:
        Fraction of units whose factor is the floor ``lambd``.

    Examples
    --------
    >>> ParamReport("fc.weight", (2, 3), 2, 0.3, 0.3, 0.65, 1.0, 0.5).at_floor
    0.5
    """

    name: str
    shape: tuple[int, ...]
    units: int
    lambd: float
    min: float
    mean: float
    max: float
    at_floor: float


def param_reports(
    shrunk: Sequence[tuple[str, tuple[int, ...], float, Tensor]], units: Sequence[int] | None = None
) -> list[ParamReport]:
    """One :class:`ParamReport` per shrunk parameter, with one host sync for them all.

    Parameters
    ----------
    shrunk:
        ``(name, shape, lambd, factors)`` for each shrunk parameter: its name, its shape, the
        floor used and the factors applied (any device).
    units:
        The number of units of each, where it is not the number of factors: the factors of a
        tensor cut into blocks of dim 0 (``nn.MultiheadAttention``'s ``in_proj_bias``) are
        repeated within each block. ``None``: one unit per factor.

    Returns
    -------
    list of ParamReport
        In the order of ``shrunk``.

    Examples
    --------
    >>> [r.at_floor for r in param_reports([("fc.weight", (2, 3), 0.3, torch.tensor([[0.3], [1.0]]))])]
    [0.5]
    """
    if not shrunk:
        return []
    counts = [f.numel() for *_, f in shrunk] if units is None else list(units)
    if len(counts) != len(shrunk):
        raise ValueError(f"got {len(shrunk)} parameters but {len(counts)} unit counts")
    device = shrunk[0][3].device
    stats = torch.stack(
        [torch.stack([f.min(), f.mean(), f.max(), (f <= lambd).float().mean()]).to(device) for _, _, lambd, f in shrunk]
    ).tolist()  # one host sync for the whole report
    return [
        ParamReport(name, tuple(shape), count, lambd, *row)
        for (name, shape, lambd, _), count, row in zip(shrunk, counts, stats, strict=True)
    ]


@dataclass
class DASHReport:
    """The report returned by :meth:`~torch_dash_optim.DASHWrapper.on_new_data`.

    Attributes
    ----------
    call:
        1-based count of ``on_new_data`` calls on the wrapper, this one included (for a dry
        run, the count the call would have had).
    num_batches:
        Batches in the gradient pass.
    params:
        One :class:`ParamReport` per shrunk parameter.
    skipped:
        Parameters left alone, by name, with the reason (frozen, not reached by the loss,
        excluded by a param group or by ``exclude=``, not a Conv/Linear parameter, tied to a
        module that is not shrunk, ...).
    unknown_state:
        Per parameter, optimizer state keys left alone because they are not recognised
        (under ``state="keep"`` and ``"scale"``; see :mod:`torch_dash_optim.state_policy`).
    skipped_batches:
        Leading batches of the loader whose forward and backward were skipped under ``tol``.
    dry_run:
        ``True`` if the call was a dry run (``on_new_data(..., dry_run=True)``): nothing was
        changed, and the factors are those a real call would apply.
    factors:
        Per shrunk parameter name, the factors applied (one per unit, shaped to broadcast
        against the parameter; for a tensor cut into blocks of dim 0, such as
        ``nn.MultiheadAttention``'s ``in_proj_bias``, each block's factor is repeated along
        it, and :attr:`ParamReport.units` counts the units). Not part of :meth:`to_dict`.
        :meth:`apply_to` applies them to another copy of the model (an EMA teacher, an
        averaged model).

    Examples
    --------
    >>> r = DASHReport(1, 2, [ParamReport("fc.weight", (2, 3), 2, 0.3, 0.3, 0.65, 1.0, 0.5)])
    >>> r.mean_factor, r.units
    (0.65, 2)
    """

    call: int
    num_batches: int
    params: list[ParamReport]
    skipped: dict[str, str] = field(default_factory=dict)
    unknown_state: dict[str, list[str]] = field(default_factory=dict)
    skipped_batches: int = 0
    dry_run: bool = False
    factors: dict[str, Tensor] = field(default_factory=dict, repr=False, compare=False)

    @property
    def units(self) -> int:
        """Total number of units (factors) over all shrunk parameters."""
        return sum(p.units for p in self.params)

    @property
    def mean_factor(self) -> float:
        """Mean factor over all units of all shrunk parameters (1.0 if none)."""
        total = self.units
        return sum(p.mean * p.units for p in self.params) / total if total else 1.0

    @property
    def at_floor(self) -> float:
        """Fraction of all units whose factor is the floor."""
        total = self.units
        return sum(p.at_floor * p.units for p in self.params) / total if total else 0.0

    def apply_to(self, target: nn.Module | Mapping[str, Tensor], *, strict: bool = True) -> list[str]:
        """Multiply the same-named tensors of another copy of the model by this call's factors.

        Use it to keep an average of the model in step with the shrunk model: an EMA teacher,
        a :class:`torch.optim.swa_utils.AveragedModel`, a copy of the weights kept elsewhere.
        Call it once per target and call. Nothing is changed unless every check passes.

        A module is named as the report names the model: without the levels that wrapper
        modules add, recognised by their type (``AveragedModel``'s and DDP's ``module.``,
        :func:`torch.compile`'s ``_orig_mod.``; see
        :func:`torch_dash_optim.names.qualified_names`). Names are then matched exactly;
        failing that, under one prefix common to all of them (a mapping from
        ``averaged_model.state_dict()``, whose keys start with ``module.``, or a module of
        another kind that keeps the model as a child, as timm's ``ModelEmaV3`` does).

        Parameters
        ----------
        target:
            A module (its parameters and buffers are searched) or a mapping of names to
            tensors, with the same structure as the model the wrapper shrank.
        strict:
            If true (default), every shrunk parameter must have a counterpart in ``target``;
            otherwise those without one are left out (shapes are checked either way).

        Returns
        -------
        list of str
            The names in ``target`` that were scaled (as the target names them).

        Raises
        ------
        KeyError
            If ``strict`` and a shrunk parameter has no counterpart.
        ValueError
            If a counterpart's shape differs, or the report carries no factors (a report
            rebuilt from :meth:`to_dict`).

        Examples
        --------
        >>> from torch_dash_optim import DASHWrapper
        >>> net = torch.nn.Linear(4, 3)
        >>> ema = torch.optim.swa_utils.AveragedModel(
        ...     net, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.999))
        >>> opt = DASHWrapper(torch.optim.SGD(net.parameters(), lr=0.1), model=net,
        ...                   loss_fn=torch.nn.CrossEntropyLoss())
        >>> report = opt.on_new_data([(torch.randn(8, 4), torch.randint(0, 3, (8,)))])
        >>> report.apply_to(ema)
        ['module.weight', 'module.bias']
        >>> torch.allclose(ema.module.weight, net.weight)
        True
        """
        if self.params and not self.factors:
            raise ValueError(
                "this report carries no factors (a report rebuilt from to_dict, or built by hand); use the "
                "DASHReport that on_new_data returned"
            )
        tensors = _named_tensors(target)
        wanted = list(self.factors)
        prefix, found = _common_prefix(wanted, tensors)
        shapes = {p.name: p.shape for p in self.params}
        plan: list[tuple[str, Tensor, Tensor]] = []
        for name, factor in self.factors.items():
            key = prefix + name
            if key not in tensors:
                if strict:
                    where = f" (nor under the prefix {prefix!r} that matches the others)" if prefix else ""
                    raise KeyError(
                        f"the target has no tensor for the shrunk parameter {name!r}{where}; matched "
                        f"{found} of {len(wanted)} names. Give a copy of the shrunk model, or strict=False to skip it"
                    )
                continue
            own, tensor = tensors[key]
            shape = tuple(shapes.get(name, tuple(tensor.shape)))
            if tuple(tensor.shape) != shape:
                raise ValueError(
                    f"{own!r} has shape {tuple(tensor.shape)} in the target but {shape} in the shrunk "
                    f"model; the target must have the same structure as the model"
                )
            if not tensor.is_floating_point():
                raise ValueError(f"{own!r} is a {tensor.dtype} tensor; only floating tensors can be scaled")
            plan.append((own, tensor, factor.to(tensor.device)))
        if plan:
            with torch.no_grad(), deferred_interrupts():
                torch._foreach_mul_([t for _, t, _ in plan], [f for _, _, f in plan])
        return [name for name, _, _ in plan]

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict (JSON-serialisable).

        Returns
        -------
        dict of str to Any
            The report's fields as plain values (the per-unit ``factors`` tensors are left
            out), plus the summary values ``mean_factor`` and ``at_floor``.
        """
        out = asdict(replace(self, factors={}))
        del out["factors"]
        out["mean_factor"] = self.mean_factor
        out["at_floor"] = self.at_floor
        return out

    def __str__(self) -> str:
        header = ("parameter", "shape", "units", "min", "mean", "max", "at floor")
        rows = [
            (
                p.name,
                "x".join(map(str, p.shape)),
                str(p.units),
                f"{p.min:.3f}",
                f"{p.mean:.3f}",
                f"{p.max:.3f}",
                f"{100 * p.at_floor:.1f}%",
            )
            for p in self.params
        ]
        rows.append(
            ("all", "", str(self.units), "", f"{self.mean_factor:.3f}", "", f"{100 * self.at_floor:.1f}%")
        )
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

        def fmt(row: tuple[str, ...]) -> str:
            cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
            return "  ".join(cells).rstrip()

        verb = "would be shrunk (dry run: nothing was changed)" if self.dry_run else "shrunk"
        lines = [
            f"DASH call {self.call}: {len(self.params)} parameter(s) {verb} over {self.num_batches} batch(es)",
            fmt(header),
            "  ".join("-" * w for w in widths),
            *map(fmt, rows[:-1]),
            "  ".join("-" * w for w in widths),
            fmt(rows[-1]),
        ]
        if self.skipped:
            lines.append(f"left alone: {len(self.skipped)}")
            lines += _skipped_lines(self.skipped)
        if self.unknown_state:
            lines.append("state keys not scaled (unknown):")
            lines += [f"  {name}: {', '.join(keys)}" for name, keys in self.unknown_state.items()]
        return "\n".join(lines)


#: A reason given to more parameters than this is printed once, with a few of their names.
_LISTED = 3


def _skipped_lines(skipped: Mapping[str, str]) -> list[str]:
    """One line per parameter left alone, except that a common reason (norm layers...) is printed once."""
    by_reason: dict[str, list[str]] = {}
    for name, why in skipped.items():
        by_reason.setdefault(why, []).append(name)
    lines = []
    for name, why in skipped.items():
        names = by_reason[why]
        if len(names) <= _LISTED:
            lines.append(f"  {name}: {why}")
        elif name == names[0]:
            lines.append(f"  {why}: {len(names)} parameters ({', '.join(names[:_LISTED])}, ...)")
    return lines


def _named_tensors(target: nn.Module | Mapping[str, Tensor]) -> dict[str, tuple[str, Tensor]]:
    """Name to match -> (the target's own name for it, tensor)."""
    if isinstance(target, nn.Module):
        return _named_with_full(target, buffers=True)
    if isinstance(target, Mapping):
        bad = [k for k, v in target.items() if not isinstance(v, Tensor)]
        if bad:
            raise TypeError(f"the target mapping must hold tensors; {bad[0]!r} is a {type(target[bad[0]]).__name__}")
        return {k: (k, v) for k, v in target.items()}
    raise TypeError(
        f"target must be a torch.nn.Module or a mapping of names to tensors; got {type(target).__name__}"
    )


def _common_prefix(wanted: list[str], tensors: Mapping[str, Any]) -> tuple[str, int]:
    """The prefix (``""`` first) under which most of ``wanted`` are names of ``tensors``, and how many."""
    names = set(wanted)
    counts: dict[str, int] = {"": sum(1 for n in wanted if n in tensors)}
    if counts[""] < len(wanted):
        for key in tensors:
            for i, ch in enumerate(key):
                if ch == "." and key[i + 1 :] in names:
                    prefix = key[: i + 1]
                    counts[prefix] = counts.get(prefix, 0) + 1
    best = max(counts, key=lambda p: (counts[p], -len(p)))
    return best, counts[best]
