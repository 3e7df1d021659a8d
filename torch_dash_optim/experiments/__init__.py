"""The warm-start experiment harness: the DASH paper's protocol, offline by default.

Run it with ``python -m torch_dash_optim.experiments`` or ``dash-warmstart`` (see
:mod:`torch_dash_optim.experiments.cli`), or from Python with :func:`run_protocol` on any
train/test datasets and model factory. A method is a :class:`~torch_dash_optim.experiments.methods.Method`;
``run_protocol`` takes the built-in ones by name, and your own as objects; a
:class:`~torch_dash_optim.experiments.training.Metric` says when an experiment's training ends.

>>> from torch_dash_optim.experiments import DEFAULT_METHODS, METHODS
>>> METHODS
('cold', 'warm', 'warm_rm', 'sp', 'l2_init', 'reset', 'fire', 'uniform_global', 'uniform_matched', 'shuffled', 'dash')
>>> DEFAULT_METHODS
('cold', 'warm', 'sp', 'fire', 'uniform_global', 'uniform_matched', 'shuffled', 'dash')
"""

from .config import DEFAULT_METHODS, METHODS, OPTIMIZERS, ProtocolConfig
from .methods import Method
from .protocol import run_protocol
from .training import Metric

__all__ = ["DEFAULT_METHODS", "METHODS", "Method", "Metric", "OPTIMIZERS", "ProtocolConfig", "run_protocol"]
