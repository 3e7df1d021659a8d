"""Checkpoint resume on the device is bit-identical: stop anywhere around a DASH call and resume."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
import torch
from _cuda_helpers import batches, cnn, train, wrapped

pytestmark = pytest.mark.cuda


@pytest.fixture
def deterministic() -> Iterator[None]:
    was = torch.are_deterministic_algorithms_enabled()
    cudnn = torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was)
        torch.backends.cudnn.benchmark = cudnn


def _fresh(device: torch.device):
    model = cnn(device, seed=3)
    return model, wrapped(model, torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True), state="scale")


def _save(model, opt) -> bytes:
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    return buf.getvalue()


@pytest.mark.parametrize("stop", ["before_dash", "after_dash"])
def test_resume_is_bit_identical(stop: str, device: torch.device, deterministic: None) -> None:
    data = batches(device, n=4)
    new = batches(device, n=2, seed=7)
    model, opt = _fresh(device)
    train(opt, model, data)
    if stop == "after_dash":
        opt.on_new_data(data + new)
    saved = _save(model, opt)
    if stop == "before_dash":
        opt.on_new_data(data + new)
    train(opt, model, data + new)
    opt.on_new_data(data + new)
    train(opt, model, new)

    model2, opt2 = _fresh(device)
    state = torch.load(io.BytesIO(saved), map_location=device, weights_only=True)
    model2.load_state_dict(state["model"])
    opt2.load_state_dict(state["opt"])
    if stop == "before_dash":
        opt2.on_new_data(data + new)
    train(opt2, model2, data + new)
    opt2.on_new_data(data + new)
    train(opt2, model2, new)

    for (k, v), v2 in zip(model.state_dict().items(), model2.state_dict().values(), strict=True):
        assert torch.equal(v, v2), k
    for p, p2 in zip(model.parameters(), model2.parameters(), strict=True):
        for key, value in opt.state[p].items():
            assert torch.equal(value, opt2.state[p2][key]), key
    assert opt.num_dash_calls == opt2.num_dash_calls
