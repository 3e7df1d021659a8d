"""What the framework callbacks log: DASH's factor statistics and the plasticity diagnostics, by key.

The keys (one scheme for both callbacks; a parameter or layer name is the model's qualified name):

* ``dash/mean_factor``, ``dash/min_factor``, ``dash/at_floor``: over every unit of every shrunk
  parameter (``at_floor``: the share of units whose factor is the floor ``lambd``);
* ``dash/mean_factor/<param>``, ``dash/min_factor/<param>``, ``dash/at_floor/<param>``: per shrunk
  parameter (left out with ``log_factors="summary"``);
* ``diag/<key>``: :meth:`Diagnostics.to_dict <torch_dash_optim.diagnostics.Diagnostics.to_dict>`
  measured before the shrink (``diag/dormant/<layer>``, ``diag/feature_rank``, ...), and
  ``diag_after/<key>`` the same measured after it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ..diagnostics import Diagnostics, diagnose
from ..report import DASHReport

__all__ = ["DiagnosticsPlan", "check_log_factors", "diagnostics_figures", "factor_figures", "plan_diagnostics"]

#: ``log_factors`` values: everything, the model-level figures only, nothing.
LOG_FACTORS = (True, "summary", False)
#: When the diagnostics are measured, and the key prefix of each measurement.
WHEN = {"before": ("diag",), "after": ("diag_after",), "both": ("diag", "diag_after")}
#: diagnose() arguments the callbacks set themselves.
_OWN = {"model", "loader", "loss_fn", "batch_loss"}


def check_log_factors(log_factors: Any) -> None:
    """Refuse a ``log_factors`` other than True, ``"summary"`` or False."""
    if not any(log_factors is v or (isinstance(v, str) and log_factors == v) for v in LOG_FACTORS):
        raise ValueError(
            f"log_factors must be True (overall and per-parameter factor statistics), 'summary' (overall "
            f"only) or False; got {log_factors!r}"
        )


def factor_figures(report: DASHReport, log_factors: bool | str) -> dict[str, float]:
    """The factor statistics of one call, by key (see the module); empty for ``log_factors=False``."""
    if log_factors is False:
        return {}
    out = {
        "dash/mean_factor": report.mean_factor,
        "dash/min_factor": min((p.min for p in report.params), default=1.0),
        "dash/at_floor": report.at_floor,
    }
    if log_factors is True:
        for p in report.params:
            out[f"dash/mean_factor/{p.name}"] = p.mean
            out[f"dash/min_factor/{p.name}"] = p.min
            out[f"dash/at_floor/{p.name}"] = p.at_floor
    return out


def diagnostics_figures(diagnostics: Diagnostics, prefix: str) -> dict[str, float]:
    """``diagnostics.to_dict()`` with every key under ``prefix/``."""
    return {f"{prefix}/{key}": value for key, value in diagnostics.to_dict().items()}


class DiagnosticsPlan:
    """The callbacks' ``diagnostics=`` setting, checked: when to measure and :func:`diagnose`'s arguments."""

    def __init__(self, when: str, kwargs: dict[str, Any]) -> None:
        self.when = when
        self.kwargs = kwargs

    @property
    def before(self) -> bool:
        """Whether to measure before the shrink."""
        return self.when in ("before", "both")

    @property
    def after(self) -> bool:
        """Whether to measure after the shrink."""
        return self.when in ("after", "both")

    def measure(
        self, model: Any, loader: Any, batch_loss: Callable[[Any, Any], Any] | None, loss_fn: Any, defaults: Any
    ) -> Diagnostics:
        """:func:`diagnose` over ``loader`` with the pass's loss; cosines only if asked (with the wrapper's
        ``alpha`` and ``granularity`` unless given)."""
        kwargs = dict(self.kwargs)
        kwargs.setdefault("cosines", False)
        if kwargs["cosines"]:
            kwargs.setdefault("alpha", defaults.alpha)
            kwargs.setdefault("granularity", defaults.granularity)
        loss = {"batch_loss": batch_loss} if batch_loss is not None else {"loss_fn": loss_fn} if loss_fn else {}
        return diagnose(model, loader, **loss, **kwargs)


def plan_diagnostics(diagnostics: Any, who: str) -> DiagnosticsPlan | None:
    """Check a callback's ``diagnostics=`` (False, True or a mapping) at construction."""
    if diagnostics is None or diagnostics is False:
        return None
    if diagnostics is True:
        return DiagnosticsPlan("before", {})
    if not isinstance(diagnostics, Mapping):
        raise TypeError(
            f"{who}(diagnostics=...) must be True, False or a dict of torch_dash_optim.diagnostics.diagnose "
            f"arguments (with 'when': 'before', 'after' or 'both'); got {type(diagnostics).__name__}"
        )
    kwargs = {str(k): v for k, v in diagnostics.items()}
    when = kwargs.pop("when", "before")
    if when not in WHEN:
        raise ValueError(f"{who}(diagnostics=...): 'when' must be 'before', 'after' or 'both'; got {when!r}")
    allowed = set(inspect.signature(diagnose).parameters) - _OWN
    unknown = sorted(str(k) for k in kwargs if k not in allowed)
    if unknown:
        raise ValueError(
            f"{who}(diagnostics=...) got {', '.join(map(repr, unknown))}, not an argument of "
            f"torch_dash_optim.diagnostics.diagnose; use 'when' and any of: {', '.join(sorted(allowed))} "
            "(the model, the loader and the loss are the callback's)"
        )
    _probe(kwargs, who)
    return DiagnosticsPlan(when, kwargs)


def _probe(kwargs: dict[str, Any], who: str) -> None:
    """Check the values at construction, with diagnose's own checks, on a one-unit model (microseconds)."""
    probe = {k: v for k, v in kwargs.items() if k not in ("layers", "features", "cosines")}
    try:
        diagnose(nn.Linear(1, 1), [torch.zeros(1, 1)], **probe)
    except (TypeError, ValueError) as err:
        if hasattr(err, "add_note"):
            err.add_note(f"raised by {who}(diagnostics=...), which passes these arguments to diagnose")
        raise
    layers = kwargs.get("layers")
    if layers is not None and (
        not isinstance(layers, (str, list, tuple))
        or not all(isinstance(x, str) for x in ([layers] if isinstance(layers, str) else layers))
    ):
        raise TypeError(f"{who}(diagnostics=...): 'layers' must be a glob pattern or a list of them; got {layers!r}")
    if not isinstance(kwargs.get("cosines", False), bool):
        raise TypeError(f"{who}(diagnostics=...): 'cosines' must be True or False; got {kwargs['cosines']!r}")
