"""Deprecated: renamed :mod:`torch_dash_optim.tolerance` (it implements ``tol=``).

Its names still import from here until version 0.4.0, each with a :class:`DeprecationWarning`
that names the new path.
"""

from __future__ import annotations

from ._deprecation import moved_names

__all__: list[str] = []

__getattr__ = moved_names(
    __name__,
    {name: f"torch_dash_optim.tolerance.{name}" for name in ("check_tol", "kept_batches", "skippable", "trim_loader")},
)
