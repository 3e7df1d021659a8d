"""DASHWrapper is a true torch.optim.Optimizer and a true drop-in for the base optimizer."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from _models import SmallCNN, assert_same, make_data, snapshot, train_steps
from torch import nn

from torch_dash_optim import SAM, DASHReport, DASHWrapper


def _wrapped(kind: str = "sgd", **kw):
    model = SmallCNN()
    base = {
        "sgd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
        "adam": lambda p: torch.optim.Adam(p, lr=1e-3),
        "sam": lambda p: SAM(p, torch.optim.SGD, rho=0.05, lr=0.05, momentum=0.9),
    }[kind](model.parameters())
    return model, DASHWrapper(base, model=model, loss_fn=nn.CrossEntropyLoss(), **kw)


def test_is_an_optimizer_that_reads_through_to_the_base():
    model, opt = _wrapped()
    assert isinstance(opt, torch.optim.Optimizer)
    assert opt.param_groups is opt.optimizer.param_groups
    assert opt.state is opt.optimizer.state
    assert opt.defaults is opt.optimizer.defaults
    # After the base replaces its groups (load_state_dict), the wrapper still sees the live ones.
    opt.load_state_dict(opt.state_dict())
    assert opt.param_groups is opt.optimizer.param_groups
    opt.param_groups[0]["lr"] = 0.123
    assert opt.optimizer.param_groups[0]["lr"] == 0.123


def test_training_is_bit_identical_to_the_bare_optimizer():
    data = make_data()
    model_a = SmallCNN()
    model_b = copy.deepcopy(model_a)
    bare = torch.optim.Adam(model_a.parameters(), lr=1e-3)
    wrapped = DASHWrapper(torch.optim.Adam(model_b.parameters(), lr=1e-3), model=model_b)
    torch.manual_seed(1)
    train_steps(model_a, bare, data, steps=4)
    torch.manual_seed(1)
    train_steps(model_b, wrapped, data, steps=4)
    for p, q in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(p, q)


def test_step_with_closure_returns_the_loss_and_zero_grad_delegates():
    model, opt = _wrapped()
    x, y = make_data()[0]

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert torch.is_tensor(loss) and loss.ndim == 0
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    closure()
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())


def test_step_hooks_fire_from_the_first_step():
    model, opt = _wrapped()
    calls = []
    opt.register_step_pre_hook(lambda o, a, k: calls.append(("pre", o)))
    opt.register_step_post_hook(lambda o, a, k: calls.append(("post", o)))
    train_steps(model, opt, make_data(), steps=1)
    assert calls == [("pre", opt), ("post", opt)]


def test_state_dict_hooks_fire():
    _, opt = _wrapped()
    seen = []
    opt.register_state_dict_pre_hook(lambda o: seen.append("sd_pre"))
    opt.register_state_dict_post_hook(lambda o, sd: seen.append("sd_post"))
    opt.register_load_state_dict_pre_hook(lambda o, sd: seen.append("load_pre"))
    opt.register_load_state_dict_post_hook(lambda o: seen.append("load_post"))
    opt.load_state_dict(opt.state_dict())
    assert seen == ["sd_pre", "sd_post", "load_pre", "load_post"]


def test_add_param_group_after_wrapping_reaches_the_base_and_is_shrunk():
    model = SmallCNN()
    head = nn.Linear(5, 2)
    full = nn.Sequential(model, head)
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=full, loss_fn=nn.CrossEntropyLoss())
    opt.add_param_group({"params": head.parameters(), "lr": 0.01, "lambd": 0.9})
    assert len(opt.optimizer.param_groups) == 2 and opt.param_groups[1]["lr"] == 0.01
    with pytest.raises(ValueError, match="param group 2: \"lambd\"=2"):
        opt.add_param_group({"params": [nn.Parameter(torch.ones(1))], "lambd": 2})
    report = opt.on_new_data([(x, y % 2) for x, y in make_data()])
    head_report = {p.name: p for p in report.params}["1.weight"]
    assert head_report.lambd == 0.9 and head_report.min >= 0.9 - 1e-7


def test_unknown_attributes_pass_through_to_the_base_but_private_ones_do_not():
    _, opt = _wrapped("sam")
    assert opt.first_step.__self__ is opt.optimizer  # SAM's two-step API
    assert not hasattr(opt, "_step_supports_amp_scaling")
    with pytest.raises(AttributeError):
        opt.no_such_thing  # noqa: B018


@pytest.mark.parametrize("kind", ["sgd", "adam", "sam"])
def test_deepcopy_and_pickle_keep_working(kind):
    model, opt = _wrapped(kind)
    data = make_data()
    train_steps(model, opt, data)
    for clone in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        assert isinstance(clone.optimizer, type(opt.optimizer))
        clone_model = clone.model
        train_steps(clone_model, clone, data, steps=2)  # steps work on the copy
        clone.on_new_data(data)
        assert clone.num_dash_calls == 1
        # The copy's optimizer updates the copy's model, not the original.
        assert all(p is q for p, q in zip(clone.param_groups[0]["params"], clone_model.parameters()))
    assert opt.num_dash_calls == 0


def test_state_dict_is_plain_and_loads_with_weights_only():
    model, opt = _wrapped("adam", lambd=0.4, alpha=0.2, state="scale")
    data = make_data()
    train_steps(model, opt, data)
    opt.on_new_data(data)
    sd = opt.state_dict()
    assert sd["dash"] == {
        "config": {"lambd": 0.4, "alpha": 0.2, "granularity": "kernel", "average": "ema", "state": "scale",
                   "mode": "eval", "tol": 0.0},
        "calls": 1,
    }
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    _, fresh = _wrapped("adam")
    fresh.load_state_dict(loaded)
    assert fresh.num_dash_calls == 1 and fresh.config.lambd == 0.4 and fresh.config.state == "scale"
    # A bare optimizer's state_dict loads too (the DASH settings stay as they are).
    _, other = _wrapped("adam", lambd=0.6)
    other.load_state_dict(opt.optimizer.state_dict())
    assert other.config.lambd == 0.6 and other.num_dash_calls == 0
    with pytest.raises(ValueError, match="'dash' entry of this state_dict is malformed"):
        other.load_state_dict({**sd, "dash": {"config": {"lambd": 0.3}}})


@pytest.mark.parametrize("kind", ["sgd", "adam", "sam"])
def test_lockstep_after_save_and_load_into_fresh_wrapper(kind):
    """timm's template: N steps, save, load into fresh parameters, N more steps in lockstep."""
    data = make_data(n_batches=4)
    model, opt = _wrapped(kind)
    train_steps(model, opt, data, steps=3)
    opt.on_new_data(data)
    train_steps(model, opt, data, steps=2)
    sd = copy.deepcopy(opt.state_dict())
    fresh_model, fresh = _wrapped(kind)
    fresh_model.load_state_dict(model.state_dict())
    fresh.load_state_dict(sd)
    for r in range(2):
        torch.manual_seed(r)
        train_steps(model, opt, data, steps=2)
        torch.manual_seed(r)
        train_steps(fresh_model, fresh, data, steps=2)
        opt.on_new_data(data)
        fresh.on_new_data(data)
    for p, q in zip(model.parameters(), fresh_model.parameters()):
        assert torch.equal(p, q)
    assert fresh.num_dash_calls == opt.num_dash_calls == 3


def test_state_dict_is_deterministic():
    model, opt = _wrapped("adam")
    train_steps(model, opt, make_data())
    a, b = opt.state_dict(), opt.state_dict()
    assert a.keys() == b.keys() and a["param_groups"] == b["param_groups"] and a["dash"] == b["dash"]
    for k in a["state"]:
        for key, v in a["state"][k].items():
            assert torch.equal(v, b["state"][k][key])


def test_nothing_changes_but_the_weights_after_success():
    model, opt = _wrapped("adam")
    data = make_data()
    train_steps(model, opt, data)
    x, y = data[0]
    nn.functional.cross_entropy(model(x), y).backward()  # leave user grads in place
    model.train()
    model.bn.eval()  # a mixed mode must come back as it was
    before = snapshot(model, opt)
    report = opt.on_new_data(data)
    assert isinstance(report, DASHReport)
    assert_same(before, snapshot(model, opt), weights=False)


class _Boom(RuntimeError):
    pass


def _raising_loader(data, at):
    for i, batch in enumerate(data):
        if i == at:
            raise _Boom(f"loader failed at batch {i}")
        yield batch


@pytest.mark.parametrize("at", [0, 2])
def test_a_loader_that_raises_part_way_changes_nothing(at):
    model, opt = _wrapped("sgd", mode="train")
    data = make_data(n_batches=4)
    train_steps(model, opt, data)
    nn.functional.cross_entropy(model(data[0][0]), data[0][1]).backward()
    before = snapshot(model, opt)
    with pytest.raises(_Boom, match=f"batch {at}") as info:
        opt.on_new_data(_raising_loader(data, at))
    assert any("left as they were" in n for n in getattr(info.value, "__notes__", []))
    assert_same(before, snapshot(model, opt))
    assert opt.num_dash_calls == 0


def test_non_finite_gradient_is_refused_with_nothing_shrunk():
    model, opt = _wrapped()
    data = make_data()
    train_steps(model, opt, data)
    before = snapshot(model, opt)
    bad = [(x * float("nan"), y) for x, y in data]
    from torch_dash_optim import NonFiniteGradientError

    with pytest.raises(NonFiniteGradientError, match=r"inf or NaN for \d+ parameter\(s\) \(conv1.weight"):
        opt.on_new_data(bad)
    assert_same(before, snapshot(model, opt))


def test_keyboard_interrupt_in_the_loss_changes_nothing():
    model, opt = _wrapped()
    data = make_data()
    train_steps(model, opt, data)
    before = snapshot(model, opt)
    calls = []

    def loss(out, y):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return nn.functional.cross_entropy(out, y)

    with pytest.raises(KeyboardInterrupt):
        opt.on_new_data(data, loss_fn=loss)
    assert_same(before, snapshot(model, opt))


def test_repr_names_the_settings_and_the_base():
    _, opt = _wrapped(lambd=0.2)
    text = repr(opt)
    assert "DASHWrapper(lambd=0.2" in text and "SGD" in text
