"""Fault matrix: whatever goes wrong inside on_new_data, nothing is left changed."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import nn

import torch_dash_optim.functional as F
import torch_dash_optim.wrapper as wrapper_module
from torch_dash_optim import DASHWrapper, NonFiniteGradientError

from ._common import assert_unchanged, image_batches, snapshot, tiny_cnn, train


class Boom(RuntimeError):
    pass


def _setup(mode: str = "train", state: str = "scale") -> tuple[nn.Module, DASHWrapper, list[Any]]:
    model = tiny_cnn()
    opt = DASHWrapper(
        torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        model=model,
        loss_fn=nn.CrossEntropyLoss(),
        mode=mode,
        state=state,
    )
    data = image_batches(4)
    train(opt, model, data[:2])  # momentum buffers exist, BatchNorm stats have moved
    # A mixed starting point: some grads set, one None, odd module modes.
    opt.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(data[0][0]), data[0][1]).backward()
    model[5].bias.grad = None
    model.eval()
    model[1].train()
    return model, opt, data


def _failing_loader(data: list[Any], at: int, exc: BaseException) -> Iterator[Any]:
    for i, batch in enumerate(data):
        if i == at:
            raise exc
        yield batch


def _loss_raising_at(at: int, exc: BaseException) -> Callable[[Any, Any], torch.Tensor]:
    calls = {"n": 0}

    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        i = calls["n"]
        calls["n"] += 1
        if i == at:
            raise exc
        return nn.functional.cross_entropy(out, y)

    return loss


def _nan_loss_at(at: int) -> Callable[[Any, Any], torch.Tensor]:
    calls = {"n": 0}

    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        i = calls["n"]
        calls["n"] += 1
        value = nn.functional.cross_entropy(out, y)
        return value * float("nan") if i == at else value

    return loss


LOADER_FAULTS = [
    pytest.param(0, Boom("loader"), Boom, id="loader-first-batch"),
    pytest.param(2, Boom("loader"), Boom, id="loader-middle-batch"),
    pytest.param(2, KeyboardInterrupt(), KeyboardInterrupt, id="loader-keyboardinterrupt-middle"),
]


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize(("at", "exc", "kind"), LOADER_FAULTS)
def test_loader_faults_leave_everything(mode: str, at: int, exc: BaseException, kind: type) -> None:
    model, opt, data = _setup(mode)
    before = snapshot(model, opt)
    with pytest.raises(kind):
        opt.on_new_data(_failing_loader(data, at, exc))
    assert_unchanged(before, model, opt)


@pytest.mark.parametrize(
    ("loss_fn", "kind", "match"),
    [
        pytest.param(_loss_raising_at(0, Boom("loss")), Boom, "loss", id="loss-first-batch"),
        pytest.param(_loss_raising_at(2, Boom("loss")), Boom, "loss", id="loss-middle-batch"),
        pytest.param(
            _loss_raising_at(3, KeyboardInterrupt()), KeyboardInterrupt, None, id="ctrl-c-last-batch"
        ),
        pytest.param(_nan_loss_at(1), NonFiniteGradientError, "inf or NaN", id="nan-loss-middle"),
        pytest.param(_nan_loss_at(0), NonFiniteGradientError, "nothing was shrunk", id="nan-loss-first"),
    ],
)
def test_loss_faults_leave_everything(loss_fn: Any, kind: type, match: str | None) -> None:
    model, opt, data = _setup("train")
    before = snapshot(model, opt)
    with pytest.raises(kind, match=match):
        opt.on_new_data(data, loss_fn=loss_fn)
    assert_unchanged(before, model, opt)


def test_error_note_says_nothing_changed() -> None:
    model, opt, data = _setup()
    with pytest.raises(Boom) as info:
        opt.on_new_data(_failing_loader(data, 1, Boom("x")))
    assert any("left as they were" in note for note in getattr(info.value, "__notes__", []))


@pytest.mark.parametrize("exc", [Boom("factors"), KeyboardInterrupt()], ids=["error", "ctrl-c"])
def test_fault_after_gathering_in_factors(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    """The factors are computed (the gathering pass is over), then the computation fails."""
    model, opt, data = _setup()
    calls = {"n": 0}

    def failing(real: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            real(*args, **kwargs)  # the factors are computed...
            calls["n"] += 1
            raise exc

        return run

    for name in ("dash_factors", "dash_factors_many"):  # whichever the wrapper uses
        if hasattr(F, name):
            monkeypatch.setattr(F, name, failing(getattr(F, name)))
    before = snapshot(model, opt)
    with pytest.raises(type(exc)):
        opt.on_new_data(data)
    assert calls["n"] == 1
    assert_unchanged(before, model, opt)


@pytest.mark.parametrize("target", ["plan_state", "_param_reports", "DASHReport"])
def test_fault_after_gathering_in_planning(monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    model, opt, data = _setup()

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise Boom(target)

    monkeypatch.setattr(wrapper_module, target, boom)
    before = snapshot(model, opt)
    with pytest.raises(Boom, match=target):
        opt.on_new_data(data)
    assert_unchanged(before, model, opt)


@pytest.mark.parametrize("exc", [Boom("shrink"), KeyboardInterrupt()], ids=["error", "ctrl-c"])
def test_fault_in_shrink_before_any_write(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    model, opt, data = _setup()

    def boom(tensors: Any, factors: Any) -> None:
        assert len(tensors) == len(factors) > 0
        raise exc

    monkeypatch.setattr(F, "shrink_", boom)
    before = snapshot(model, opt)
    with pytest.raises(type(exc)):
        opt.on_new_data(data)
    assert_unchanged(before, model, opt)


@pytest.mark.skipif(os.name != "posix", reason="SIGINT delivery to self needs POSIX")
def test_sigint_during_shrink_completes_it_then_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    model, opt, data = _setup("eval")  # eval: no dropout draws, so two runs can be compared
    clean_model, clean_opt, _ = _setup("eval")
    clean_opt.on_new_data(data)
    real = F.shrink_

    def interrupted(tensors: Any, factors: Any) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # arrives mid-shrink; must be held back
        real(tensors[:1], factors[:1])
        real(tensors[1:], factors[1:])

    monkeypatch.setattr(F, "shrink_", interrupted)
    with pytest.raises(KeyboardInterrupt):
        opt.on_new_data(data)
    # All or nothing: the shrink finished exactly as an uninterrupted call does.
    for p, q in zip(model.parameters(), clean_model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert opt.num_dash_calls == clean_opt.num_dash_calls == 1
    for (_, s), (_, t) in zip(opt.state.items(), clean_opt.state.items(), strict=True):
        assert torch.equal(s["momentum_buffer"], t["momentum_buffer"])


def test_success_after_failure_matches_clean_run() -> None:
    model, opt, data = _setup("eval")  # eval: no dropout draws, so two runs can be compared
    clean_model, clean_opt, _ = _setup("eval")
    with pytest.raises(Boom):
        opt.on_new_data(_failing_loader(data, 2, Boom("x")))
    opt.on_new_data(data)
    clean_opt.on_new_data(data)
    for p, q in zip(model.parameters(), clean_model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert opt.num_dash_calls == 1
