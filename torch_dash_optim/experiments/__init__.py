"""The warm-start experiment harness: the DASH paper's protocol, offline by default.

Run it with ``python -m torch_dash_optim.experiments`` or ``dash-warmstart`` (see
:mod:`torch_dash_optim.experiments.cli`), or from Python with :func:`run_protocol` on any
train/test datasets and model factory. A method is a :class:`~torch_dash_optim.experiments.methods.Method`;
``run_protocol`` takes the built-in ones by name, and your own as objects.

>>> from torch_dash_optim.experiments import DEFAULT_METHODS, METHODS
>>> METHODS
('cold', 'warm', 'warm_rm', 'sp', 'l2_init', 'reset', 'fire', 'uniform', 'dash')
>>> DEFAULT_METHODS
('cold', 'warm', 'sp', 'fire', 'uniform', 'dash')
"""

from .config import DEFAULT_METHODS, METHODS, OPTIMIZERS, ProtocolConfig
from .methods import Method
from .protocol import run_protocol

__all__ = ["DEFAULT_METHODS", "METHODS", "Method", "OPTIMIZERS", "ProtocolConfig", "run_protocol"]
