"""torch-dash-optim: DASH (Direction-Aware SHrinking) for warm-started training in PyTorch.

>>> from torch_dash_optim import DASHWrapper, SAM

The package exports what a training script needs: :class:`DASHWrapper` (with its
:class:`DASHConfig`), what it reports (:class:`DASHReport`, :class:`ParamReport`), the
error of a non-finite gradient (:class:`NonFiniteGradientError`), :class:`SAM`, and
:func:`on_new_data` and :func:`find_dash`, which reach the wrapper through framework proxies.

The layers under the wrapper are public modules too, imported when first used
(``torch_dash_optim.functional`` works after ``import torch_dash_optim``), from the bottom:
:mod:`~torch_dash_optim.functional` (pure tensor math), :mod:`~torch_dash_optim.names`
(parameter names across wrapper modules), :mod:`~torch_dash_optim.units` (the unit rules by
module type), :mod:`~torch_dash_optim.selection` (which parameters, with which units),
:mod:`~torch_dash_optim.gather` (the gradient pass), :mod:`~torch_dash_optim.tolerance`
(``tol=``), :mod:`~torch_dash_optim.state_policy`, :mod:`~torch_dash_optim.wrapper`,
:mod:`~torch_dash_optim.sam`, :mod:`~torch_dash_optim.amp`,
:mod:`~torch_dash_optim.distributed` and :mod:`~torch_dash_optim.baselines`. The experiment
harness, :mod:`torch_dash_optim.experiments`, and the framework integrations,
:mod:`torch_dash_optim.integrations`, need their extras.
"""

import importlib as _importlib
from typing import Any as _Any

from ._deprecation import resolve as _resolve
from ._deprecation import warn_moved as _warn_moved
from .gather import NonFiniteGradientError
from .report import DASHReport, ParamReport
from .sam import SAM
from .wrapper import DASHConfig, DASHWrapper, find_dash, on_new_data

__version__ = "0.2.0"

__all__ = [
    "DASHConfig",
    "DASHReport",
    "DASHWrapper",
    "NonFiniteGradientError",
    "ParamReport",
    "SAM",
    "find_dash",
    "on_new_data",
]

# Submodules imported on first use, as attributes of the package; the deprecated ones are left out of dir().
_SUBMODULES = frozenset(
    {
        "amp",
        "baselines",
        "diagnostics",
        "distributed",
        "experiments",
        "functional",
        "gather",
        "integrations",
        "names",
        "ranks",
        "report",
        "sam",
        "selection",
        "state_policy",
        "tolerance",
        "units",
        "wrapper",
    }
)
_DEPRECATED_SUBMODULES = frozenset({"chain", "skip"})

# Names the package exported until version 0.2.0, served from their modules until 0.4.0.
_MOVED = {
    "gather_direction": "torch_dash_optim.gather.gather_direction",
    "sam_amp_step": "torch_dash_optim.amp.sam_amp_step",
}


def __getattr__(name: str) -> _Any:
    """Import a submodule on first use; serve a moved name with a DeprecationWarning."""
    if name in _SUBMODULES or name in _DEPRECATED_SUBMODULES:
        return _importlib.import_module(f"{__name__}.{name}")
    if name in _MOVED:
        _warn_moved(f"{__name__}.{name}", _MOVED[name])
        return _resolve(_MOVED[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The package's names and its submodules, imported or not (the deprecated ones left out)."""
    return sorted(({*globals()} | _SUBMODULES) - _DEPRECATED_SUBMODULES)
