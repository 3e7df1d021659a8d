"""Old import paths that keep working for one release, with a DeprecationWarning naming the new one."""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

#: The release that removes the deprecated paths.
REMOVED_IN = "0.4.0"

_PACKAGE = os.path.dirname(__file__) + os.sep


def warn_moved(old: str, new: str) -> None:
    """Warn that ``old`` is deprecated for ``new``, pointing at the first caller outside the package."""
    level, frame = 1, sys._getframe(0)  # stacklevel 1 is this function
    while frame is not None and (frame.f_code.co_filename.startswith(_PACKAGE) or _internal(frame)):
        frame = frame.f_back
        if frame is not None and not _internal(frame):  # warnings skips importlib's frames itself
            level += 1
    warnings.warn(
        f"{old} is deprecated and will be removed in version {REMOVED_IN}; use {new} instead",
        DeprecationWarning,
        stacklevel=level,
    )


def _internal(frame: Any) -> bool:
    """Whether ``warnings`` skips this frame when counting ``stacklevel`` (importlib's bootstrap)."""
    name = frame.f_code.co_filename
    return "importlib" in name and "_bootstrap" in name


def resolve(path: str) -> Any:
    """The object at the dotted ``path`` (``"torch_dash_optim.find_dash"``)."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def moved_names(module: str, moved: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that serves each old name of ``moved`` from its new path, with a warning."""

    def __getattr__(name: str) -> Any:
        if name not in moved:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warn_moved(f"{module}.{name}", moved[name])
        return resolve(moved[name])

    return __getattr__
