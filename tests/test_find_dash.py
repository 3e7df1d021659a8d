"""find_dash / on_new_data (torch_dash_optim.wrapper) through wrappers around (and inside) the DASH wrapper."""

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


class Forwarding(Proxy):
    """Like timm's Lookahead: an optimizer around another, not a DASH class, reading its groups and state."""

    @property
    def defaults(self):
        return self.optimizer.defaults

    @property
    def state(self):
        return self.optimizer.state


def test_a_wrapper_that_holds_a_dash_wrapper_is_not_wrapped_again():
    model, opt = _wrapped()
    with pytest.raises(TypeError, match="already wrapped in a DASHWrapper; wrap the base optimizer once"):
        DASHWrapper(Forwarding(opt), model=model)


def test_a_sam_inside_another_wrapper_is_seen_between_its_two_steps():
    model = nn.Linear(3, 2)
    sam = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    opt = DASHWrapper(Forwarding(sam), model=model, loss_fn=nn.CrossEntropyLoss())
    data = [(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]))]
    nn.functional.cross_entropy(model(data[0][0]), data[0][1]).backward()
    sam.first_step(zero_grad=True)
    perturbed = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(RuntimeError, match="between SAM.first_step and SAM.second_step"):
        opt.on_new_data(data)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), perturbed))
    nn.functional.cross_entropy(model(data[0][0]), data[0][1]).backward()
    sam.second_step(zero_grad=True)
    assert opt.on_new_data(data).call == 1
