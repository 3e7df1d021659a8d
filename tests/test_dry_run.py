"""on_new_data(dry_run=True): the report of a real call, and nothing changed, bit for bit."""

from __future__ import annotations

import pytest
import torch
from _models import SmallCNN, assert_same, make_data, snapshot, train_steps
from torch import nn

from torch_dash_optim import SAM, DASHWrapper, on_new_data

MAKERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-3),
    "sam": lambda p: SAM(p, torch.optim.SGD, rho=0.05, lr=0.05, momentum=0.9),
}


def _setup(kind: str, **kw):
    """A trained wrapper with optimizer state, some user grads set and some None, and mixed module modes."""
    torch.manual_seed(0)
    model = SmallCNN()
    opt = DASHWrapper(MAKERS[kind](model.parameters()), model=model, loss_fn=nn.CrossEntropyLoss(), **kw)
    data = make_data(n_batches=4)
    train_steps(model, opt, data)
    opt.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(data[1][0]), data[1][1]).backward()
    model.conv1.bias.grad = None
    model.eval()
    model.bn.train()
    model.drop.train()
    return model, opt, data


@pytest.mark.parametrize(("kind", "state", "mode"), [("sgd", "keep", "eval"), ("adam", "scale", "train"),
                                                     ("adam", "reset", "eval"), ("sam", "scale", "train")])
def test_a_dry_run_changes_nothing_and_reports_what_a_real_call_applies(kind, state, mode):
    model, opt, data = _setup(kind, state=state, mode=mode)
    before = snapshot(model, opt)
    dry = opt.on_new_data(data, dry_run=True)
    assert_same(before, snapshot(model, opt))  # weights, grads, state, buffers, modes, call count
    assert dry.dry_run and dry.call == 1 and opt.num_dash_calls == 0 and dry.params
    assert "dry run: nothing was changed" in str(dry)
    assert dry.to_dict()["dry_run"] is True
    real = opt.on_new_data(data)
    assert not real.dry_run and real.call == 1 and opt.num_dash_calls == 1
    assert real.params == dry.params and real.skipped == dry.skipped and real.unknown_state == dry.unknown_state
    assert dry.factors.keys() == real.factors.keys()
    for name, f in dry.factors.items():
        assert torch.equal(f, real.factors[name]), name  # the same factors, bit for bit
    for name, p in model.named_parameters():
        if name in real.factors:
            torch.testing.assert_close(p, before["params"][name] * real.factors[name])


def test_the_free_function_and_include_exclude_take_dry_run_too():
    model, opt, data = _setup("sgd")
    before = snapshot(model, opt)
    report = on_new_data(opt, data, dry_run=True, exclude="fc*")
    assert_same(before, snapshot(model, opt))
    assert set(report.factors) == {"conv1.weight", "conv1.bias", "conv2.weight"}
    assert report.skipped["fc1.weight"] == "excluded by exclude=['fc*']"
    with pytest.raises(TypeError, match="dry_run must be True or False"):
        opt.on_new_data(data, dry_run="yes")


def test_a_failing_dry_run_changes_nothing_either():
    model, opt, data = _setup("adam")
    before = snapshot(model, opt)

    def bad(batch):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        opt.on_new_data([data[0]], batch_loss=lambda m, b: bad(b), dry_run=True)
    assert_same(before, snapshot(model, opt))


def test_a_dry_run_leaves_a_schedule_free_optimizer_in_eval_mode_bit_for_bit():
    schedulefree = pytest.importorskip("schedulefree")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(3)]
    opt = DASHWrapper(schedulefree.AdamWScheduleFree(model.parameters(), lr=0.01), model=model,
                      loss_fn=nn.CrossEntropyLoss())
    opt.optimizer.train()
    for x, y in data * 3:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    opt.optimizer.eval()  # the parameters hold the averaged point x
    flags = [dict(g) for g in opt.param_groups]
    before = snapshot(model, opt)
    dry = opt.on_new_data(data, dry_run=True)
    assert_same(before, snapshot(model, opt))
    assert [dict(g) for g in opt.param_groups].__repr__() == flags.__repr__()  # still in eval mode
    real = opt.on_new_data(data)
    for name, f in dry.factors.items():
        assert torch.equal(f, real.factors[name]), name
