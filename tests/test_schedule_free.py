"""Schedule-free optimizers (the ``schedulefree`` package) under DASH: eval mode and reset."""

from __future__ import annotations

import pytest
import torch
from _snapshot import assert_unchanged, snapshot
from torch import nn

from torch_dash_optim import DASHWrapper

schedulefree = pytest.importorskip("schedulefree")

MAKERS = {
    "adamw": lambda params: schedulefree.AdamWScheduleFree(params, lr=0.01),
    "sgd": lambda params: schedulefree.SGDScheduleFree(params, lr=0.05),
}


def _trained(kind: str) -> tuple[nn.Module, DASHWrapper, list]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(3)]
    opt = DASHWrapper(MAKERS[kind](model.parameters()), model=model, loss_fn=nn.CrossEntropyLoss())
    opt.optimizer.train()
    for _ in range(5):
        for x, y in data:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    return model, opt, data


def _in_train_mode(opt: DASHWrapper) -> bool:
    inner = opt.optimizer
    if "train_mode" in inner.__dict__:
        return inner.train_mode
    return all(g["train_mode"] for g in inner.param_groups)


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_on_new_data_in_eval_mode_shrinks_the_training_point_and_stays_in_eval_mode(kind: str) -> None:
    model, opt, data = _trained(kind)
    ref_model, ref, _ = _trained(kind)
    # The reference: what the user would do by hand: back to train mode, shrink, eval mode again.
    ref.optimizer.eval()
    ref.optimizer.train()
    ref.on_new_data(data)
    ref.optimizer.eval()
    opt.optimizer.eval()
    report = opt.on_new_data(data)
    assert not _in_train_mode(opt) and report.params
    for p, q in zip(model.parameters(), ref_model.parameters(), strict=True):
        assert torch.equal(p, q)
    opt.optimizer.train()  # and training goes on from the shrunk training point
    ref.optimizer.train()
    for p, q in zip(model.parameters(), ref_model.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_a_failure_in_eval_mode_leaves_the_averaged_point_and_the_mode(kind: str) -> None:
    model, opt, data = _trained(kind)
    opt.optimizer.eval()
    before = snapshot(model, opt)
    calls = {"n": 0}

    def failing(model: nn.Module, batch: tuple) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom")
        return nn.functional.cross_entropy(model(batch[0]), batch[1])

    with pytest.raises(RuntimeError, match="boom"):
        opt.on_new_data(data, batch_loss=failing)
    assert_unchanged(before, model, opt)
    assert not _in_train_mode(opt) and opt.num_dash_calls == 0
