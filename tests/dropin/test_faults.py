"""Fault matrix: whatever goes wrong inside on_new_data, nothing is left changed."""

from __future__ import annotations

import copy
import os
import signal
import threading
import warnings
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


@pytest.fixture(autouse=True)
def _python_sigint_handler() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt, as in an interactive run: a suite started in the
    background (``cmd &`` in a script) inherits SIGINT ignored, and Python then installs no
    handler of its own."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _ctrl_c() -> None:
    """A real SIGINT, sent to this (the main) thread: with other threads alive (gloo, compile
    workers), a process-wide kill may land on another thread and reach Python late."""
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)


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


@pytest.mark.parametrize("target", ["plan_state", "param_reports", "DASHReport"])
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
        _ctrl_c()  # arrives mid-shrink; must be held back
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


# -- issue 10: Ctrl-C during the restore, a truthful note, SIG_IGN ---------------------------------


class _InterruptOnRestore(nn.Sequential):
    """Sends itself a real SIGINT the first time its mode is set back after the loss armed it."""

    armed = False

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "training" and type(self).armed:
            type(self).armed = False
            _ctrl_c()
        super().__setattr__(name, value)


@pytest.mark.skipif(os.name != "posix", reason="SIGINT delivery to self needs POSIX")
@pytest.mark.parametrize("fails", [False, True], ids=["after-success", "after-error"])
def test_sigint_during_the_restore_is_held_until_everything_is_restored(fails: bool) -> None:
    torch.manual_seed(0)
    model = _InterruptOnRestore(*tiny_cnn())
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), model=model, state="reset")
    data = image_batches(3)
    train(opt, model, data[:2])
    model.train()
    model[1].eval()
    model[5].weight.grad = None
    before = snapshot(model, opt)

    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if fails:
            raise Boom("loss")
        _InterruptOnRestore.armed = True  # the next mode change is the restore
        return nn.functional.cross_entropy(out, y)

    def arm_then_fail(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _InterruptOnRestore.armed = True
        raise Boom("loss")

    with pytest.raises((KeyboardInterrupt, Boom)) as info:
        opt.on_new_data(data, loss_fn=arm_then_fail if fails else loss)
    assert not _InterruptOnRestore.armed  # the signal was sent during the restore
    # Held back until grads, modes and buffers were all restored, then raised; nothing shrunk.
    assert isinstance(info.value, KeyboardInterrupt)
    assert_unchanged(before, model, opt)


@pytest.mark.skipif(os.name != "posix", reason="SIGINT delivery to self needs POSIX")
def test_sigint_during_shrink_note_says_the_shrink_completed(monkeypatch: pytest.MonkeyPatch) -> None:
    model, opt, data = _setup("eval")
    real = F.shrink_

    def interrupted(tensors: Any, factors: Any) -> None:
        _ctrl_c()
        real(tensors, factors)

    monkeypatch.setattr(F, "shrink_", interrupted)
    with pytest.raises(KeyboardInterrupt) as info:
        opt.on_new_data(data)
    notes = " ".join(getattr(info.value, "__notes__", []))
    assert "after its shrink had completed" in notes and "num_dash_calls=1" in notes
    assert "left as they were" not in notes
    assert opt.num_dash_calls == 1


@pytest.mark.skipif(os.name != "posix", reason="SIGINT delivery to self needs POSIX")
def test_sigint_ignored_by_the_process_is_ignored_during_the_shrink(monkeypatch: pytest.MonkeyPatch) -> None:
    model, opt, data = _setup("eval")
    real = F.shrink_

    def interrupted(tensors: Any, factors: Any) -> None:
        _ctrl_c()
        real(tensors, factors)

    monkeypatch.setattr(F, "shrink_", interrupted)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        report = opt.on_new_data(data)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert report.call == opt.num_dash_calls == 1
    assert signal.getsignal(signal.SIGINT) is previous


# -- issue 10: buffers a forward rebinds, weights a forward writes -----------------------------------


class _Counting(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.register_buffer("count", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.count = self.count + 1  # rebinds the buffer to a new tensor
        return self.lin(x)


@pytest.mark.parametrize("fails", [False, True], ids=["success", "failure"])
def test_buffers_that_forward_rebinds_are_restored(fails: bool) -> None:
    torch.manual_seed(0)
    model = _Counting()
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss())
    data = [(torch.randn(4, 4), torch.randint(0, 3, (4,))) for _ in range(3)]
    original = model.count
    loader = _failing_loader(data, 2, Boom("x")) if fails else data
    if fails:
        with pytest.raises(Boom):
            opt.on_new_data(loader)
    else:
        opt.on_new_data(loader)
    assert model.count is original and float(model.count) == 0.0
    assert dict(model.named_buffers()).keys() == {"count"}


def _embedding_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 4, max_norm=1.0), nn.Flatten(), nn.Linear(8, 3))
    with torch.no_grad():
        model[0].weight.mul_(5.0)  # every row above max_norm: any lookup renormalises it
    return model


@pytest.mark.skipif(os.name != "posix", reason="SIGINT delivery to self needs POSIX")
def test_ctrl_c_leaves_max_norm_embeddings_as_they_were() -> None:
    model = _embedding_model()
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model)
    data = [(torch.randint(0, 10, (6, 2)), torch.randint(0, 3, (6,))) for _ in range(4)]
    before = snapshot(model, opt)
    calls = {"n": 0}

    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 3:
            _ctrl_c()  # a real Ctrl-C at batch 2
        return nn.functional.cross_entropy(out, y)

    with pytest.raises(KeyboardInterrupt) as info:
        opt.on_new_data(data, loss_fn=loss)
    assert "left as they were" in " ".join(info.value.__notes__)
    assert_unchanged(before, model, opt)


def test_max_norm_embeddings_are_not_renormalised_by_a_successful_call() -> None:
    model = _embedding_model()
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss())
    data = [(torch.randint(0, 10, (6, 2)), torch.randint(0, 3, (6,))) for _ in range(3)]
    weight = model[0].weight.detach().clone()
    report = opt.on_new_data(data)
    assert torch.equal(model[0].weight, weight)
    assert report.skipped["0.weight"] == "not a Conv/Linear parameter"


# -- issue 25: buffers a forward resizes in place (a freshly prepared QAT model) ----------------------


def _qat_model() -> nn.Module:
    """Linear layers prepared for QAT with the fbgemm qconfig, before their first forward: their
    per-channel observers hold empty min_val/max_val and one-element scale/zero_point, which the
    first forward resizes in place to one per output channel."""
    quantization = pytest.importorskip("torch.ao.quantization")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    model.qconfig = quantization.get_default_qat_qconfig("fbgemm")
    with warnings.catch_warnings():  # torch.ao.quantization's deprecation and observer notices
        warnings.simplefilter("ignore")
        quantization.prepare_qat(model.train(), inplace=True)
    assert type(model[0]).__module__.startswith("torch.ao.nn.qat")
    return model


def _layouts(model: nn.Module) -> dict[str, tuple[Any, ...]]:
    return {n: (b, b.shape, b.stride(), b.storage_offset()) for n, b in model.named_buffers()}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("fails", [False, True], ids=["success", "failure"])
def test_buffers_that_forward_resizes_are_restored_in_place(fails: bool) -> None:
    model = _qat_model()
    untouched = copy.deepcopy(model)
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss())
    data = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(3)]
    before, layouts = snapshot(model, opt), _layouts(model)
    assert layouts["0.weight_fake_quant.activation_post_process.min_val"][1] == (0,)
    if fails:  # the forward of batch 0 has resized the observers when batch 1 fails
        with pytest.raises(Boom) as info:
            opt.on_new_data(data, loss_fn=_loss_raising_at(1, Boom("loss")))
        assert "left as they were" in " ".join(info.value.__notes__)
        assert_unchanged(before, model, opt)
    else:
        report = opt.on_new_data(data)
        assert {p.name for p in report.params} == {"0.weight", "0.bias", "2.weight", "2.bias"}
        assert_unchanged(before, model, opt, weights=False)
    for name, (tensor, shape, stride, offset) in layouts.items():
        b = dict(model.named_buffers())[name]
        assert b is tensor and (b.shape, b.stride(), b.storage_offset()) == (shape, stride, offset), name
    # Training goes on as on the model DASH never saw: its first forward resizes the observers itself.
    with torch.no_grad():
        untouched[0].weight.copy_(model[0].weight)
        untouched[2].weight.copy_(model[2].weight)
        untouched[0].bias.copy_(model[0].bias)
        untouched[2].bias.copy_(model[2].bias)
    x = torch.randn(5, 4)
    assert torch.equal(model(x), untouched(x))
    for (n, b), (_, c) in zip(model.named_buffers(), untouched.named_buffers(), strict=True):
        assert b.shape == c.shape and torch.equal(b, c), n


def test_a_buffer_a_forward_swaps_to_another_storage_is_rebound_to_its_own() -> None:
    class _Swapping(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 3)
            self.register_buffer("table", torch.arange(6.0).reshape(2, 3).t())  # a non-contiguous view
            self.alias = self.table  # held elsewhere too, as observers do

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.table.set_(torch.zeros(5))  # the same object, another storage and layout
            return self.lin(x)

    model = _Swapping()
    table, values, stride = model.table, model.table.clone(), model.table.stride()
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss())
    opt.on_new_data([(torch.randn(4, 4), torch.randint(0, 3, (4,)))])
    assert model.table is table is model.alias and model.table.stride() == stride
    assert torch.equal(model.table, values)
