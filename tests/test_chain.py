"""find_dash / on_new_data through wrappers around (and inside) the DASH wrapper."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torch_dash_optim import SAM, DASHWrapper, find_dash, on_new_data


class Proxy(torch.optim.Optimizer):
    """Like Accelerate's AcceleratedOptimizer: holds the optimizer, forwards nothing unknown."""

    def __init__(self, optimizer):
        self.optimizer = optimizer

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    def step(self, closure=None):
        return self.optimizer.step(closure)


class Copying(torch.optim.Optimizer):
    """Like LightningOptimizer: copies the wrapper's __dict__ and subclasses its class."""

    def __init__(self, optimizer):
        self.__dict__ = {k: v for k, v in optimizer.__dict__.items() if k != "step"}
        self._optimizer = optimizer
        self.__class__ = type("Copying" + type(optimizer).__name__, (Copying, type(optimizer)), {})


def _wrapped():
    model = nn.Linear(3, 2)
    opt = DASHWrapper(SAM(model.parameters(), torch.optim.SGD, lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss())
    return model, opt


def test_find_dash_through_proxies_and_copies():
    _, opt = _wrapped()
    assert find_dash(Proxy(Proxy(opt))) is opt
    assert find_dash(Copying(opt)) is opt
    assert find_dash(Proxy(Copying(opt))) is opt


def test_on_new_data_counts_on_the_real_wrapper():
    _, opt = _wrapped()
    data = [(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]))]
    assert on_new_data(Proxy(opt), data).call == 1
    assert on_new_data(Copying(opt), data).call == 2
    assert opt.num_dash_calls == 2 and opt.state_dict()["dash"]["calls"] == 2


def test_no_wrapper_names_the_chain():
    model = nn.Linear(3, 2)
    with pytest.raises(TypeError, match=r"no DASHWrapper found in Proxy -> SAM -> SGD; wrap the base optimizer"):
        find_dash(Proxy(SAM(model.parameters(), torch.optim.SGD, lr=0.1)))
    with pytest.raises(TypeError, match="no DASHWrapper found in list"):
        on_new_data([], [])
