"""torch-dash-optim: DASH (Direction-Aware SHrinking) for warm-started training in PyTorch.

>>> from torch_dash_optim import DASHWrapper, SAM
"""

from . import functional, selection, state_policy
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
    "functional",
    "gather_direction",
    "selection",
    "state_policy",
]
