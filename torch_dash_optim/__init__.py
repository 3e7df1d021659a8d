"""torch-dash-optim: DASH (Direction-Aware SHrinking) for warm-started training in PyTorch.

>>> from torch_dash_optim import DASHWrapper, SAM

Layers, from the bottom: :mod:`~torch_dash_optim.functional` (pure tensor math),
:mod:`~torch_dash_optim.selection` (which parameters, which units),
:mod:`~torch_dash_optim.gather` (the gradient pass), :mod:`~torch_dash_optim.state_policy`,
:mod:`~torch_dash_optim.wrapper` (:class:`DASHWrapper`), :mod:`~torch_dash_optim.sam`,
:mod:`~torch_dash_optim.amp`, :mod:`~torch_dash_optim.distributed` and
:mod:`~torch_dash_optim.baselines`. :func:`on_new_data` and :func:`find_dash`
(:mod:`~torch_dash_optim.chain`) reach the wrapper through framework proxies. The experiment
harness, :mod:`torch_dash_optim.experiments`, and the framework integrations,
:mod:`torch_dash_optim.integrations`, are imported on demand (they need their extras).
"""

from . import amp, baselines, chain, distributed, functional, selection, state_policy
from .amp import sam_amp_step
from .chain import find_dash, on_new_data
from .gather import NonFiniteGradientError, gather_direction
from .report import DASHReport, ParamReport
from .sam import SAM
from .wrapper import DASHConfig, DASHWrapper

__version__ = "0.2.0"

__all__ = [
    "DASHConfig",
    "DASHReport",
    "DASHWrapper",
    "NonFiniteGradientError",
    "ParamReport",
    "SAM",
    "__version__",
    "amp",
    "baselines",
    "chain",
    "distributed",
    "find_dash",
    "functional",
    "gather_direction",
    "on_new_data",
    "sam_amp_step",
    "selection",
    "state_policy",
]
