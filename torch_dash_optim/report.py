"""What one :meth:`~torch_dash_optim.DASHWrapper.on_new_data` call did, parameter by parameter."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from torch import Tensor

__all__ = ["DASHReport", "ParamReport"]


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
        Under ``state="scale"``, per parameter, state keys left alone because they are not
        recognised.
    skipped_batches:
        Leading batches of the loader whose forward and backward were skipped under ``tol``.
    factors:
        Per shrunk parameter name, the factors applied (one per unit, shaped to broadcast
        against the parameter). Not part of :meth:`to_dict`.

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

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict (JSON-serialisable)."""
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
