"""torch-dash-optim: DASH (Direction-Aware SHrinking) for warm-started training in PyTorch.

>>> from torch_dash_optim import DASHWrapper, SAM

Layers, from the bottom: :mod:`~torch_dash_optim.functional` (pure tensor math),
:mod:`~torch_dash_optim.selection` (which parameters, which units),
:mod:`~torch_dash_optim.gather` (the gradient pass), :mod:`~torch_dash_optim.state_policy`,
:mod:`~torch_dash_optim.wrapper` (:class:`DASHWrapper`), :mod:`~torch_dash_optim.sam`,
:mod:`~torch_dash_optim.amp`, :mod:`~torch_dash_optim.distributed` and
:mod:`~torch_dash_optim.baselines`. The experiment harness, :mod:`torch_dash_optim.experiments`,
is imported on demand (it needs the ``experiments`` extra).
"""

from . import amp, baselines, distributed, functional, selection, state_policy
from .amp import sam_amp_step
from .gather import NonFiniteGradientError, gather_direction
from .report import DASHReport, ParamReport
from .sam import SAM
from .wrapper import DASHConfig, DASHWrapper

__version__ = "0.1.0"

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
    "distributed",
    "functional",
    "gather_direction",
    "sam_amp_step",
    "selection",
    "state_policy",
]
