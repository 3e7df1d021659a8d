"""Checkpoint and resume: torch.save -> torch.load(weights_only=True) -> load_state_dict."""

from __future__ import annotations

import io
from typing import Any

import pytest
import torch
from torch import nn

from torch_dash_optim import SAM, DASHWrapper

from ._common import image_batches, tiny_cnn

CHUNKS = [image_batches(2, seed=s) for s in (10, 11, 12)]  # the data grows by one chunk per phase


def _build(kind: str) -> tuple[nn.Module, DASHWrapper, torch.optim.lr_scheduler.LRScheduler]:
    model = tiny_cnn()
    if kind == "sam":
        base: torch.optim.Optimizer = SAM(
            model.parameters(), torch.optim.SGD, rho=0.05, lr=0.05, momentum=0.9
        )
    elif kind == "adamw":
        base = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    else:
        base = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    # Non-default settings on purpose: the fresh wrapper below gets defaults and must load these.
    opt = DASHWrapper(base, model=model, loss_fn=nn.CrossEntropyLoss(), lambd=0.5, alpha=0.4, state="scale")
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    return model, opt, sched


def _train_two_epochs(model: nn.Module, opt: DASHWrapper, sched: Any, seen: list) -> None:
    """Two epochs over ``seen`` with closure steps (so SAM takes real SAM steps)."""
    model.train()
    for _ in range(2):
        for x, y in seen:

            def closure(x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                return loss

            opt.step(closure)
        sched.step()


def _phase(model: nn.Module, opt: DASHWrapper, sched: Any, k: int) -> None:
    """Phase k: shrink on all data so far (new data last), then train two epochs on it."""
    seen = [b for chunk in CHUNKS[: k + 1] for b in chunk]
    opt.on_new_data(seen)
    _train_two_epochs(model, opt, sched, seen)


def _save(model: nn.Module, opt: DASHWrapper, sched: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(
        {
            "model": model.state_dict(),
            "opt": opt.state_dict(),
            "sched": sched.state_dict(),
            "rng": torch.get_rng_state(),
        },
        buf,
    )
    return buf.getvalue()


def _fresh_from(blob: bytes, kind: str) -> tuple[nn.Module, DASHWrapper, Any]:
    ckpt = torch.load(io.BytesIO(blob), weights_only=True)
    model = tiny_cnn(seed=123)  # different init: everything must come from the checkpoint
    base = (
        SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.05, momentum=0.9)
        if kind == "sam"
        else torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
        if kind == "adamw"
        else torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    )
    opt = DASHWrapper(base, model=model, loss_fn=nn.CrossEntropyLoss())  # default settings
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)  # scheduler first ...
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["opt"])  # ... then the optimizer state
    sched.load_state_dict(ckpt["sched"])
    torch.set_rng_state(ckpt["rng"])
    return model, opt, sched


def test_state_dict_carries_config_and_counter() -> None:
    model, opt, sched = _build("sgd")
    _phase(model, opt, sched, 0)
    sd = opt.state_dict()
    assert sd["dash"] == {
        "config": {
            "lambd": 0.5,
            "alpha": 0.4,
            "granularity": "kernel",
            "average": "ema",
            "state": "scale",
            "mode": "eval",
            "tol": 0.0,
        },
        "calls": 1,
    }
    _, fresh, _ = _fresh_from(_save(model, opt, sched), "sgd")
    assert fresh.config == opt.config and fresh.num_dash_calls == 1
    assert [g["lr"] for g in fresh.param_groups] == [g["lr"] for g in opt.param_groups]


def test_bare_optimizer_state_dict_loads_and_keeps_wrapper_config() -> None:
    model = tiny_cnn()
    bare = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), model=model, lambd=0.7)
    opt.load_state_dict(bare.state_dict())
    assert opt.config.lambd == 0.7 and opt.num_dash_calls == 0


@pytest.mark.parametrize(("kind", "k"), [("sgd", 1), ("sgd", 2), ("adamw", 1), ("sam", 1)])
def test_resume_after_kth_on_new_data_is_bit_identical(kind: str, k: int) -> None:
    torch.manual_seed(0)
    model, opt, sched = _build(kind)
    for phase in range(len(CHUNKS)):
        _phase(model, opt, sched, phase)
    reference = {n: p.detach().clone() for n, p in model.named_parameters()}
    ref_state = opt.state_dict()

    torch.manual_seed(0)
    model, opt, sched = _build(kind)
    for phase in range(k):
        _phase(model, opt, sched, phase)
    opt.on_new_data([b for chunk in CHUNKS[: k + 1] for b in chunk])  # the k-th... then interrupted
    # "Interrupted" right after this on_new_data: save, then lose everything.
    blob = _save(model, opt, sched)
    del model, opt, sched
    model, opt, sched = _fresh_from(blob, kind)
    assert opt.num_dash_calls == k + 1 and opt.config.lambd == 0.5
    seen = [b for chunk in CHUNKS[: k + 1] for b in chunk]
    _train_two_epochs(model, opt, sched, seen)  # the rest of phase k
    for phase in range(k + 1, len(CHUNKS)):
        _phase(model, opt, sched, phase)
    for n, p in model.named_parameters():
        assert torch.equal(p, reference[n]), n
    assert opt.num_dash_calls == len(CHUNKS)
    state = opt.state_dict()
    assert state["dash"] == ref_state["dash"]
    assert [g["lr"] for g in state["param_groups"]] == [g["lr"] for g in ref_state["param_groups"]]


def test_scheduler_created_after_load_resets_lr() -> None:
    """Why the documented order is scheduler first, then load_state_dict."""
    model, opt, sched = _build("sgd")
    _phase(model, opt, sched, 0)
    _phase(model, opt, sched, 1)
    blob = _save(model, opt, sched)
    ckpt = torch.load(io.BytesIO(blob), weights_only=True)
    saved_lr = opt.param_groups[0]["lr"]
    assert saved_lr < 0.05
    fresh_model = tiny_cnn()
    fresh = DASHWrapper(torch.optim.SGD(fresh_model.parameters(), lr=0.05, momentum=0.9), model=fresh_model)
    fresh.load_state_dict(ckpt["opt"])
    assert fresh.param_groups[0]["lr"] == saved_lr
    # A scheduler attached to the wrapper edits the groups the base optimizer uses (no stale alias).
    fresh_sched = torch.optim.lr_scheduler.StepLR(fresh, step_size=1, gamma=0.5)
    fresh_sched.load_state_dict(ckpt["sched"])
    fresh_sched.step()
    assert fresh.optimizer.param_groups[0]["lr"] == fresh.param_groups[0]["lr"]


def test_sam_refuses_checkpoint_between_its_two_steps() -> None:
    model, opt, _ = _build("sam")
    x, y = image_batches(1)[0]
    nn.functional.cross_entropy(model(x), y).backward()
    opt.first_step(zero_grad=True)
    with pytest.raises(RuntimeError, match="between first_step and second_step"):
        opt.state_dict()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.second_step()
    torch.load(io.BytesIO(_save(model, opt, torch.optim.lr_scheduler.StepLR(opt, 1))), weights_only=True)
