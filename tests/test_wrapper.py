"""DASHWrapper is a true torch.optim.Optimizer and a true drop-in for the base optimizer."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from _models import SmallCNN, assert_same, assert_unchanged, make_data, snapshot, train_steps
from _snapshot import same
from torch import nn

import torch_dash_optim.functional as F
from torch_dash_optim import SAM, DASHReport, DASHWrapper, NonFiniteGradientError


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
    opt.add_param_group({"params": head.parameters(), "lr": 0.01, "dash_lambd": 0.9})
    assert len(opt.optimizer.param_groups) == 2 and opt.param_groups[1]["lr"] == 0.01
    with pytest.raises(ValueError, match="param group 2: \"dash_lambd\"=2"):
        opt.add_param_group({"params": [nn.Parameter(torch.ones(1))], "dash_lambd": 2})
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


def test_state_dict_is_deterministic_and_adds_only_the_dash_settings():
    """Two identical runs give equal state_dicts, equal to the bare optimizer's plus the DASH settings."""
    data = make_data()
    dicts = []
    for _ in range(2):
        torch.manual_seed(3)
        model, opt = _wrapped("adam", lambd=0.45)
        torch.manual_seed(4)
        train_steps(model, opt, data)
        opt.on_new_data(data)
        dicts.append(opt.state_dict())
    a, b = dicts
    torch.manual_seed(3)
    bare_model = SmallCNN()
    bare = torch.optim.Adam(bare_model.parameters(), lr=1e-3)
    torch.manual_seed(4)
    train_steps(bare_model, bare, data)
    plain = bare.state_dict()
    assert same(a, b)
    # Everything but the DASH entries is the bare optimizer's, key for key; the steps taken
    # before the shrink were the same, so the state tensors are equal too.
    assert set(a) - set(plain) <= {"dash"}
    for key in plain:
        if key == "param_groups":
            assert [{k: v for k, v in g.items() if not k.startswith("dash")} for g in a[key]] == plain[key]
        else:
            assert same(a[key], plain[key]), key
    assert opt.num_dash_calls == 1 and opt.config.lambd == 0.45


def test_nothing_changes_but_the_weights_after_success():
    model, opt, data = _user_setup("adam", mode="train")
    before = snapshot(model, opt)
    moved = _watch(model, before)
    report = opt.on_new_data(data)
    assert isinstance(report, DASHReport) and report.params
    assert moved["buffers"] and moved["modes"]  # the pass did move buffers and modes...
    assert_same(before, snapshot(model, opt), weights=False)  # ...and they came back
    assert any(not torch.equal(p, before["params"][n]) for n, p in model.named_parameters())
    assert opt.num_dash_calls == 1


class _Boom(RuntimeError):
    pass


def _user_setup(kind: str = "sgd", **kw):
    """A wrapper with optimizer state, some user grads set and some None, and mixed module modes."""
    model, opt = _wrapped(kind, **kw)
    data = make_data(n_batches=4)
    train_steps(model, opt, data)  # optimizer state exists, BatchNorm statistics have moved
    opt.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(data[1][0]), data[1][1]).backward()  # user grads in place
    model.conv1.bias.grad = None  # ... and some that are None, which must stay None
    model.fc1.weight.grad = None
    model.eval()
    model.bn.train()  # mixed modes must come back as they were
    model.drop.train()
    assert opt.state and model.conv1.weight.grad is not None
    return model, opt, data


def _watch(model, before):
    """Record, at every forward of the pass, whether buffers, modes or grads already differ from ``before``."""
    moved = {"buffers": False, "modes": False, "grads": False}

    def hook(module, args, output):
        moved["buffers"] |= any(not torch.equal(b, before["buffers"][n]) for n, b in model.named_buffers())
        moved["modes"] |= {n: m.training for n, m in model.named_modules()} != before["modes"]
        moved["grads"] |= any(p.grad is not before["grad_objects"][n] for n, p in model.named_parameters())

    model.fc2.register_forward_hook(hook)
    return moved


def _raising_loader(data, at):
    for i, batch in enumerate(data):
        if i == at:
            raise _Boom(f"loader failed at batch {i}")
        yield batch


@pytest.mark.parametrize(
    ("kind", "state", "at"),
    [("sgd", "keep", 0), ("sgd", "scale", 2), ("adam", "reset", 2), ("adam", "scale", 3)],
)
def test_a_loader_that_raises_part_way_changes_nothing(kind, state, at):
    model, opt, data = _user_setup(kind, mode="train", state=state)
    before = snapshot(model, opt)
    moved = _watch(model, before)
    with pytest.raises(_Boom, match=f"batch {at}") as info:
        opt.on_new_data(_raising_loader(data, at))
    assert any("left as they were" in n for n in getattr(info.value, "__notes__", []))
    if at:  # the batches before the failure really moved buffers, modes and grads
        assert moved == {"buffers": True, "modes": True, "grads": True}
    assert_unchanged(before, model, opt)
    assert opt.num_dash_calls == 0


@pytest.mark.parametrize(("kind", "state"), [("adam", "reset"), ("sgd", "scale")])
def test_non_finite_gradient_is_refused_with_nothing_shrunk(kind, state):
    model, opt, data = _user_setup(kind, mode="train", state=state)
    before = snapshot(model, opt)
    moved = _watch(model, before)
    bad = [(x, y) for x, y in data[:3]] + [(data[3][0] * float("nan"), data[3][1])]  # the last batch only
    with pytest.raises(NonFiniteGradientError, match=r"inf or NaN for \d+ parameter\(s\) \(conv1.weight"):
        opt.on_new_data(bad)
    assert moved == {"buffers": True, "modes": True, "grads": True}
    assert_unchanged(before, model, opt)


@pytest.mark.parametrize(("mode", "state"), [("train", "reset"), ("eval", "scale")])
def test_keyboard_interrupt_in_the_loss_changes_nothing(mode, state):
    model, opt, data = _user_setup("sgd", mode=mode, state=state)
    before = snapshot(model, opt)
    moved = _watch(model, before)
    calls = []

    def loss(out, y):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return nn.functional.cross_entropy(out, y)

    with pytest.raises(KeyboardInterrupt):
        opt.on_new_data(data, loss_fn=loss)
    assert moved == {"buffers": mode == "train", "modes": True, "grads": True}
    assert_unchanged(before, model, opt)


@pytest.mark.parametrize("state", ["reset", "scale"])
@pytest.mark.parametrize("where", ["factors", "shrink"])
def test_a_failure_after_the_pass_changes_nothing(monkeypatch, state, where):
    """The direction is gathered; then computing the factors, or the shrink before its first write, fails."""
    model, opt, data = _user_setup("adam", mode="train", state=state)
    before = snapshot(model, opt)
    seen = []

    def boom(*args, **kwargs):
        seen.append(args)
        raise _Boom(where)

    monkeypatch.setattr(F, "dash_factors_many" if where == "factors" else "shrink_", boom)
    with pytest.raises(_Boom, match=where):
        opt.on_new_data(data)
    assert len(seen) == 1
    if where == "shrink":  # the plan was made: reset would drop the state, scale would scale it
        tensors, factors = seen[0]
        state_ids = {id(v) for s in opt.state.values() for v in s.values() if torch.is_tensor(v)}
        assert (state == "scale") == any(id(t) in state_ids for t in tensors)
    assert_unchanged(before, model, opt)
    assert opt.num_dash_calls == 0
    monkeypatch.undo()
    opt.on_new_data(data)  # and a retry works
    assert opt.num_dash_calls == 1
    assert (state == "reset") == (len(opt.state) < len(before["opt_state"]))


def _constructed_floor_case(lambd):
    """A model=None problem whose per-unit cosines are known exactly (see the test below)."""
    w = nn.Parameter(
        torch.tensor(
            [
                [1.0, 0.0, 0.0, 0.0],  # aligned with the direction: factor 1
                [0.0, 2.0, 0.0, 0.0],  # opposed: cosine -1
                [0.0, 0.0, 3.0, 0.0],  # orthogonal: cosine 0
                [1.0, 0.0, 0.0, 0.0],  # cosine exactly 0.5 (the direction row is (1, 1, 1, 1))
                [0.0, 0.0, 0.0, 0.0],  # a zero unit: cosine 0
            ]
        )
    )
    direction = torch.tensor(
        [
            [5.0, 0.0, 0.0, 0.0],
            [0.0, -1.0, 0.0, 0.0],
            [1.0, 1.0, 0.0, 0.0],
            [1.0, 1.0, 1.0, 1.0],
            [1.0, 1.0, 1.0, 1.0],
        ]
    )
    conv = nn.Parameter(torch.ones(2, 1, 2))  # two kernel units of a Conv1d-shaped weight
    conv_direction = torch.tensor([[[1.0, 1.0]], [[1.0, -1.0]]])  # cosines 1 and exactly 0
    opt = DASHWrapper(
        torch.optim.SGD([w, conv], lr=0.1),
        batch_loss=lambda model, batch: -(w * direction).sum() - (conv * conv_direction).sum(),
        lambd=lambd,
        alpha=1.0,
    )
    return w, conv, opt


@pytest.mark.parametrize(
    ("lambd", "w_floor", "conv_floor"),
    [
        (0.5, 4 / 5, 1 / 2),  # opposed, orthogonal, exactly-lambd and zero rows; the conv unit at 0
        (0.0, 3 / 5, 1 / 2),  # cosines -1, 0 and 0 are clamped to exactly 0
        (0.3, 3 / 5, 1 / 2),  # 0.5 is above the floor now
        (1.0, 1.0, 1.0),  # every factor is the floor
    ],
)
def test_report_at_floor_counts_units_exactly_at_the_floor(lambd, w_floor, conv_floor):
    w, conv, opt = _constructed_floor_case(lambd)
    report = opt.on_new_data([None])  # one batch; the loss ignores it
    by_name = {p.name: p for p in report.params}
    assert set(by_name) == {"param[0]", "param[1]"}
    factors = report.factors["param[0]"].flatten().tolist()
    floor = torch.tensor(lambd, dtype=torch.float32).item()  # lambd as a float32 factor
    expected = [1.0, floor, floor, max(0.5, floor), floor]
    assert factors == expected  # exact: the constructed cosines are exact in float32
    # at_floor is a float32 mean: a one-unit miscount moves it by 1/5 or 1/2, far beyond 1e-6
    assert by_name["param[0]"].at_floor == pytest.approx(w_floor, abs=1e-6)
    assert by_name["param[1]"].at_floor == pytest.approx(conv_floor, abs=1e-6)
    assert by_name["param[0]"].min == floor and by_name["param[0]"].max == 1.0
    assert report.at_floor == pytest.approx((5 * w_floor + 2 * conv_floor) / 7, abs=1e-6)
    assert report.to_dict()["at_floor"] == report.at_floor


def test_repr_names_the_settings_and_the_base():
    _, opt = _wrapped(lambd=0.2)
    text = repr(opt)
    assert "DASHWrapper(lambd=0.2" in text and "SGD" in text


def test_a_bare_optimizers_checkpoint_never_brings_back_stale_dash_settings():
    """A wrapper checkpoint loaded into a bare optimizer leaves the settings in its groups; they are
    stale: a wrapper that loads the bare optimizer's own checkpoint keeps its settings and count."""
    model, opt = _wrapped(lambd=0.5)
    train_steps(model, opt, make_data(2))  # momentum exists
    opt.on_new_data(make_data(2))
    opt.on_new_data(make_data(2))
    wrapped_ckpt = opt.state_dict()
    bare = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    bare.load_state_dict(wrapped_ckpt)  # torch keeps the extra group key
    bare_ckpt = bare.state_dict()
    assert "dash" not in bare_ckpt and bare_ckpt["param_groups"][0]["dash_settings"]["calls"] == 2

    _, fresh = _wrapped(lambd=0.7)
    fresh.load_state_dict(bare_ckpt)
    assert fresh.config.lambd == 0.7 and fresh.num_dash_calls == 0  # its own, not the stale copy
    assert all(g["dash_settings"] is None for g in fresh.param_groups)
    assert torch.equal(fresh.state_dict()["state"][0]["momentum_buffer"], wrapped_ckpt["state"][0]["momentum_buffer"])

    # wrapping that bare optimizer: its live groups lose the stale copy too
    rewrapped = DASHWrapper(bare, model=model, loss_fn=nn.CrossEntropyLoss(), lambd=0.7)
    assert all(g["dash_settings"] is None for g in bare.param_groups)
    assert rewrapped.state_dict()["param_groups"][0]["dash_settings"] == {"config": {**wrapped_ckpt["dash"]["config"],
                                                                                   "lambd": 0.7}, "calls": 0}

    # a wrapper's own checkpoint still restores everything, from "dash" or from the group copy alone
    fresh.load_state_dict(wrapped_ckpt)
    assert fresh.config.lambd == 0.5 and fresh.num_dash_calls == 2
