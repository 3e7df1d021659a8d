"""What one :meth:`~torch_dash_optim.DASHWrapper.on_new_data` call did, parameter by parameter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from ._interrupts import deferred_interrupts

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


def param_reports(shrunk: Sequence[tuple[str, tuple[int, ...], float, Tensor]]) -> list[ParamReport]:
    """One :class:`ParamReport` per shrunk parameter, with one host sync for them all.

    Parameters
    ----------
    shrunk:
        ``(name, shape, lambd, factors)`` for each shrunk parameter: its name, its shape, the
        floor used and the factors applied (any device).

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
    device = shrunk[0][3].device
    stats = torch.stack(
        [torch.stack([f.min(), f.mean(), f.max(), (f <= lambd).float().mean()]).to(device) for _, _, lambd, f in shrunk]
    ).tolist()  # one host sync for the whole report
    return [
        ParamReport(name, tuple(shape), f.numel(), lambd, *row)
        for (name, shape, lambd, f), row in zip(shrunk, stats, strict=True)
    ]


@dataclass
class DASHReport:
    """The report returned by :meth:`~torch_dash_optim.DASHWrapper.on_new_data`.

    Attributes
    ----------
    call:
        1-based count of ``on_new_data`` calls on the wrapper, this one included.
    num_batches:
        Batches in the gradient pass.
    params:
        One :class:`ParamReport` per shrunk parameter.
    skipped:
        Parameters left alone, by name, with the reason (frozen, not reached by the loss,
        excluded by a param group, not a Conv/Linear parameter, ...).
    unknown_state:
        Per parameter, optimizer state keys left alone because they are not recognised
        (under ``state="keep"`` and ``"scale"``; see :mod:`torch_dash_optim.state_policy`).
    skipped_batches:
        Leading batches of the loader whose forward and backward were skipped under ``tol``.
    factors:
        Per shrunk parameter name, the factors applied (one per unit, shaped to broadcast
        against the parameter). Not part of :meth:`to_dict`. :meth:`apply_to` applies them to
        another copy of the model (an EMA teacher, an averaged model).

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
        a :class:`torch.optim.swa_utils.AveragedModel` (whose parameter names start with
        ``module.``), a copy of the weights kept elsewhere. Names are matched exactly, or
        after dropping the ``module.`` prefix of wrappers (``AveragedModel``, DDP) and the
        ``_orig_mod.`` of :func:`torch.compile`. Call it once per target and call. Nothing is
        changed unless every check passes.

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
            The names in ``target`` that were scaled.

        Raises
        ------
        KeyError
            If ``strict`` and a shrunk parameter has no counterpart, or a name matches
            several tensors of ``target``.
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
        index: dict[str, list[str]] = {}
        for name in tensors:
            index.setdefault(_bare(name), []).append(name)
        shapes = {p.name: p.shape for p in self.params}
        plan: list[tuple[str, Tensor, Tensor]] = []
        for name, factor in self.factors.items():
            if name in tensors:
                matches = [name]
            else:
                matches = index.get(_bare(name), [])
            if len(matches) > 1:
                raise KeyError(
                    f"{name!r} matches several tensors of the target ({', '.join(matches)}); pass the module "
                    "that has the model's structure (e.g. averaged_model.module) or a mapping of its tensors"
                )
            if not matches:
                if strict:
                    raise KeyError(
                        f"the target has no tensor for the shrunk parameter {name!r} (nor with a 'module.' or "
                        f"'_orig_mod.' prefix); give a copy of the shrunk model, or strict=False to skip it"
                    )
                continue
            tensor = tensors[matches[0]]
            shape = tuple(shapes.get(name, tuple(tensor.shape)))
            if tuple(tensor.shape) != shape:
                raise ValueError(
                    f"{matches[0]!r} has shape {tuple(tensor.shape)} in the target but {shape} in the shrunk "
                    f"model; the target must have the same structure as the model"
                )
            if not tensor.is_floating_point():
                raise ValueError(f"{matches[0]!r} is a {tensor.dtype} tensor; only floating tensors can be scaled")
            plan.append((matches[0], tensor, factor.to(tensor.device)))
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

        lines = [
            f"DASH call {self.call}: {len(self.params)} parameter(s) shrunk over {self.num_batches} batch(es)",
            fmt(header),
            "  ".join("-" * w for w in widths),
            *map(fmt, rows[:-1]),
            "  ".join("-" * w for w in widths),
            fmt(rows[-1]),
        ]
        if self.skipped:
            lines.append(f"left alone: {len(self.skipped)}")
            lines += [f"  {name}: {why}" for name, why in self.skipped.items()]
        if self.unknown_state:
            lines.append("state keys not scaled (unknown):")
            lines += [f"  {name}: {', '.join(keys)}" for name, keys in self.unknown_state.items()]
        return "\n".join(lines)


def _named_tensors(target: nn.Module | Mapping[str, Tensor]) -> dict[str, Tensor]:
    if isinstance(target, nn.Module):
        out: dict[str, Tensor] = dict(target.named_buffers())
        out.update(target.named_parameters())
        return out
    if isinstance(target, Mapping):
        bad = [k for k, v in target.items() if not isinstance(v, Tensor)]
        if bad:
            raise TypeError(f"the target mapping must hold tensors; {bad[0]!r} is a {type(target[bad[0]]).__name__}")
        return dict(target)
    raise TypeError(
        f"target must be a torch.nn.Module or a mapping of names to tensors; got {type(target).__name__}"
    )


def _bare(name: str) -> str:
    """The name without wrapper prefixes: leading ``module.`` parts and every ``_orig_mod.`` part."""
    parts = [p for p in name.split(".") if p != "_orig_mod"]
    while len(parts) > 1 and parts[0] == "module":
        parts = parts[1:]
    return ".".join(parts)
