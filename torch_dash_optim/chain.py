"""Deprecated: :func:`~torch_dash_optim.find_dash` and :func:`~torch_dash_optim.on_new_data` moved.

They live beside :class:`~torch_dash_optim.DASHWrapper` in :mod:`torch_dash_optim.wrapper`;
import them from :mod:`torch_dash_optim`. Importing them from here works until version 0.4.0,
with a :class:`DeprecationWarning` that names the new path.
"""

from __future__ import annotations

from ._deprecation import moved_names

__all__: list[str] = []

__getattr__ = moved_names(
    __name__, {"find_dash": "torch_dash_optim.find_dash", "on_new_data": "torch_dash_optim.on_new_data"}
)
