"""The warm-start experiment harness: the DASH paper's protocol, offline by default.

Run it with ``python -m torch_dash_optim.experiments`` or ``dash-warmstart`` (see
:mod:`torch_dash_optim.experiments.cli`), or from Python with :func:`run_protocol` on any
train/test datasets and model factory.

>>> from torch_dash_optim.experiments import METHODS, ProtocolConfig, run_protocol
>>> METHODS
('cold', 'warm', 'warm_rm', 'sp', 'l2_init', 'reset', 'fire', 'dash')
>>> DEFAULT_METHODS
('cold', 'warm', 'sp', 'fire', 'dash')
"""

from .config import DEFAULT_METHODS, METHODS, OPTIMIZERS, ProtocolConfig
from .protocol import run_protocol

__all__ = ["DEFAULT_METHODS", "METHODS", "OPTIMIZERS", "ProtocolConfig", "run_protocol"]
