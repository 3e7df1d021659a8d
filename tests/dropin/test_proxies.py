"""Proxies around the wrapper (Lightning, Fabric, shallow __dict__ copies) share its DASH state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from torch_dash_optim import DASHConfig, DASHWrapper

from ._common import tiny_mlp, vector_batches


class DictCopyProxy:
    """The proxy pattern of Lightning's LightningOptimizer before 2.0: a shallow ``__dict__`` copy."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.__dict__ = {k: v for k, v in optimizer.__dict__.items() if k not in ("step", "__del__")}
        self._optimizer = optimizer
        self.__class__ = type("Proxy" + type(optimizer).__name__, (type(self), type(optimizer)), {})


def _lightning(opt: DASHWrapper) -> Any:
    pytest.importorskip("lightning")
    from lightning.pytorch.core.optimizer import LightningOptimizer

    return LightningOptimizer(opt)


def _fabric(opt: DASHWrapper) -> Any:
    pytest.importorskip("lightning")
    from lightning.fabric.strategies import SingleDeviceStrategy
    from lightning.fabric.wrappers import _FabricOptimizer

    return _FabricOptimizer(opt, SingleDeviceStrategy(device=torch.device("cpu")))


PROXIES: dict[str, Callable[[DASHWrapper], Any]] = {
    "dict-copy": DictCopyProxy,
    "lightning": _lightning,
    "fabric": _fabric,
}


@pytest.mark.parametrize("make", list(PROXIES.values()), ids=list(PROXIES))
def test_a_call_through_the_proxy_is_counted_and_saved_by_the_wrapper(make: Callable[[DASHWrapper], Any]) -> None:
    model = tiny_mlp()
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss())
    proxy = make(opt)
    assert isinstance(proxy, DASHWrapper)
    data = vector_batches(2)
    before = [p.detach().clone() for p in model.parameters()]
    report = proxy.on_new_data(data)
    assert report.call == 1 and not all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    assert opt.num_dash_calls == proxy.num_dash_calls == 1
    assert opt.state_dict()["dash"]["calls"] == 1  # what a checkpoint of the wrapper records
    opt.on_new_data(data)
    assert proxy.num_dash_calls == 2
    proxy.config = DASHConfig(lambd=0.6)
    assert opt.config.lambd == 0.6 and opt.state_dict()["dash"]["config"]["lambd"] == 0.6
