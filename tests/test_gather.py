"""The gradient pass: the EMA, in-place accumulation, and nothing left behind."""

from __future__ import annotations

import pytest
import torch
from _snapshot import assert_unchanged, snapshot
from torch import nn

from torch_dash_optim import NonFiniteGradientError
from torch_dash_optim.gather import gather_direction, move_to_device


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Linear(4, 2))
    data = [(torch.randn(5, 3), torch.randint(0, 2, (5,))) for _ in range(4)]
    return model, data


def _loss(model):
    return lambda b: nn.functional.cross_entropy(model(b[0]), b[1])


def _batch_grads(model, data, params):
    out = []
    for x, y in data:
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        out.append([p.grad.clone() for p in params])
    model.zero_grad()
    return out


@pytest.mark.parametrize("alpha", [0.1, 0.3, 1.0])
def test_ema_of_negative_gradients_from_zero_without_bias_correction(alpha):
    model, data = _setup()
    params = [model[0].weight, model[3].weight]
    model.eval()
    grads = _batch_grads(model, data, params)
    expected = [torch.zeros_like(p) for p in params]
    for gs in grads:
        expected = [(1 - alpha) * e + alpha * (-g) for e, g in zip(expected, gs)]
    res = gather_direction(params, data, _loss(model), alpha=alpha, model=model)
    assert res.num_batches == 4
    for d, e in zip(res.directions, expected):
        torch.testing.assert_close(d, e, rtol=1e-5, atol=1e-7)


def test_mean_average_is_the_plain_mean():
    model, data = _setup()
    params = list(model.parameters())
    model.eval()
    grads = _batch_grads(model, data, params)
    res = gather_direction(params, data, _loss(model), average="mean", model=model)
    for i, d in enumerate(res.directions):
        torch.testing.assert_close(d, -sum(g[i] for g in grads) / len(grads), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("train_mode", [True, False], ids=["train-mode", "eval-mode"])
def test_grads_modes_and_buffers_come_back_exactly(train_mode):
    model, data = _setup()
    extra = _user_state(model, data)
    before = snapshot(model, extra=[extra])
    res = gather_direction(list(model.parameters()) + [extra], data, _loss(model), model=model, train_mode=train_mode)
    assert all(d is not None for d in res.directions[:-1]) and res.directions[-1] is None
    assert_unchanged(before, model, extra=[extra])


def test_the_pass_runs_in_eval_mode_by_default_and_under_no_grad():
    model, data = _setup()
    seen = []
    model[2].register_forward_hook(lambda m, i, o: seen.append(m.training))
    with torch.no_grad():
        res = gather_direction(list(model.parameters()), data, _loss(model), model=model)
    assert seen == [False] * 4 and all(d is not None for d in res.directions)
    assert model.training


def test_unreached_parameters_have_no_direction():
    model, data = _setup()
    extra = nn.Parameter(torch.ones(3))
    res = gather_direction([model[0].weight, extra], data, _loss(model), model=model)
    assert res.directions[0] is not None and res.directions[1] is None and extra.grad is None


def test_batches_are_moved_and_nested_structures_kept():
    """A real move (to the meta device): every tensor leaf moves, containers keep their types,
    other leaves are the very same objects."""
    from collections import OrderedDict, namedtuple

    Pair = namedtuple("Pair", "x y")
    label, tag = object(), "s"
    batch = OrderedDict(
        a=[torch.ones(1), (torch.zeros(2, 3), 3, None)],
        b=Pair(torch.ones(2, dtype=torch.float16), tag),
        c=(label, torch.arange(4)),
    )
    moved = move_to_device(batch, torch.device("meta"))
    assert type(moved) is OrderedDict and list(moved) == ["a", "b", "c"]
    assert type(moved["a"]) is list and type(moved["a"][1]) is tuple
    assert type(moved["b"]) is Pair and moved["b"].y is tag
    assert moved["c"][0] is label and moved["a"][1][1] == 3 and moved["a"][1][2] is None
    leaves = [moved["a"][0], moved["a"][1][0], moved["b"].x, moved["c"][1]]
    originals = [batch["a"][0], batch["a"][1][0], batch["b"].x, batch["c"][1]]
    for new, old in zip(leaves, originals, strict=True):
        assert new.device.type == "meta" and old.device.type == "cpu"
        assert new.shape == old.shape and new.dtype == old.dtype
    # Already on the device: the same tensors come back, nothing is copied.
    same = move_to_device(batch, torch.device("cpu"))
    assert same["a"][0] is batch["a"][0] and same["b"].x is batch["b"].x


def _user_state(model, data):
    """Mixed modes, user grads set and None, BatchNorm statistics that a train-mode pass moves."""
    model.train()
    for x, _ in data[:2]:  # the running statistics are not at their initial values
        model(x)
    nn.functional.cross_entropy(model(data[0][0]), data[0][1]).backward()
    model[3].bias.grad = None
    model[0].weight.grad = None
    model.eval()
    model[1].train()
    extra = nn.Parameter(torch.randn(3))  # a parameter outside the model, with a grad of its own
    extra.grad = torch.randn(3)
    return extra


class _Boom(RuntimeError):
    pass


def _loss_failing_at(model, at, make_failure):
    def loss(batch, calls=[]):  # noqa: B006 - the call counter
        calls.append(1)
        if len(calls) - 1 == at:
            return make_failure(batch)
        return nn.functional.cross_entropy(model(batch[0]), batch[1])

    return loss


def _raise(exc):
    def fail(batch):
        raise exc

    return fail


FAILURES = [
    pytest.param(ValueError, "the loader yielded no batch", "empty", None, id="empty-loader"),
    pytest.param(_Boom, "in the loader", "loader", 0, id="loader-first"),
    pytest.param(_Boom, "in the loader", "loader", 2, id="loader-middle"),
    pytest.param(_Boom, "in the loss", _raise(_Boom("in the loss")), 2, id="loss-middle"),
    pytest.param(KeyboardInterrupt, None, _raise(KeyboardInterrupt()), 3, id="ctrl-c-last"),
    pytest.param(ValueError, r"batch 2: the loss must be a scalar; got shape \(5,\)", "non-scalar", 2, id="non-scalar"),
    pytest.param(ValueError, "batch 1: the loss does not depend", "detached", 1, id="detached"),
    pytest.param(TypeError, "batch 1: the loss must be a Tensor; got float", "float", 1, id="not-a-tensor"),
    pytest.param(NonFiniteGradientError, r"for \d parameter\(s\) \(first", "nan", 2, id="nan-direction"),
]


@pytest.mark.parametrize("train_mode", [True, False], ids=["train-mode", "eval-mode"])
@pytest.mark.parametrize(("kind", "match", "failure", "at"), FAILURES)
def test_failures_leave_everything_exactly_as_it_was(train_mode, kind, match, failure, at):
    model, data = _setup()
    extra = _user_state(model, data)
    params = [model[0].weight, model[3].weight, extra]
    before = snapshot(model, extra=[extra])
    moved = {"buffers": False, "modes": False, "grads": False}

    def watch(module, args, output):
        moved["buffers"] |= any(not torch.equal(b, before["buffers"][n]) for n, b in model.named_buffers())
        moved["modes"] |= {n: m.training for n, m in model.named_modules()} != before["modes"]
        moved["grads"] |= model[3].weight.grad is not before["grad_objects"]["3.weight"]

    model[3].register_forward_hook(watch)
    bad = {
        "non-scalar": lambda b: nn.functional.cross_entropy(model(b[0]), b[1], reduction="none"),
        "detached": lambda b: nn.functional.cross_entropy(model(b[0]), b[1]).detach(),
        "float": lambda b: 1.0,
        "nan": lambda b: nn.functional.cross_entropy(model(b[0] * float("nan")), b[1]),
    }
    loader = data
    if failure == "empty":
        loader, loss = [], _loss(model)
    elif failure == "loader":
        loader, loss = _failing_loader(data, at), _loss(model)
    else:
        loss = _loss_failing_at(model, at, bad.get(failure, failure))
    with pytest.raises(kind, match=match):
        gather_direction(
            params,
            loader,
            loss,
            model=model,
            trainable=list(model.parameters()) + [extra],
            train_mode=train_mode,
            names=["first", "last", "extra"],
        )
    if at:  # batches before the failure ran: the pass had really moved grads, modes (and buffers)
        assert moved == {"buffers": train_mode, "modes": True, "grads": True}
    assert_unchanged(before, model, extra=[extra])


def _failing_loader(data, at):
    for i, batch in enumerate(data):
        if i == at:
            raise _Boom("in the loader")
        yield batch


class _Checkpointed(nn.Module):
    def __init__(self, reentrant: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.c, self.b = nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(4, 2)
        self.reentrant = reentrant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.utils.checkpoint.checkpoint(self.c, self.a(x), use_reentrant=self.reentrant)
        return self.b(h)


def test_reentrant_activation_checkpointing_is_refused_with_the_fix_and_nothing_changes():
    from torch_dash_optim import DASHWrapper

    model = _Checkpointed(reentrant=True)
    opt = DASHWrapper(torch.optim.Adam(model.parameters(), lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss())
    data = [(torch.randn(5, 3), torch.randint(0, 2, (5,))) for _ in range(3)]
    nn.functional.cross_entropy(model(data[0][0]), data[0][1]).backward()
    opt.step()
    before = snapshot(model, opt)
    with pytest.raises(RuntimeError, match=r"reentrant activation checkpointing.*use_reentrant=False"):
        opt.on_new_data(data)
    assert_unchanged(before, model, opt)
    assert opt.num_dash_calls == 0
    model.reentrant = False  # the fix the error names works
    report = opt.on_new_data(data)
    assert report.num_batches == 3 and not report.skipped and opt.num_dash_calls == 1


class _ClippedActivation(nn.Module):
    """Clips the gradient of its hidden activation in forward: a non-linear hook on an activation."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(3, 8), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        if h.requires_grad:
            h.register_hook(lambda g: g.clamp(-1e-3, 1e-3))
        return self.b(h)


@pytest.mark.parametrize("alpha", [0.3, 0.05])
def test_a_clipping_hook_on_an_activation_sees_each_batch_gradient(alpha):
    model = _ClippedActivation()
    params = list(model.parameters())
    data = [(torch.randn(16, 3) * 5, torch.randint(0, 2, (16,))) for _ in range(30)]
    expected = [torch.zeros_like(p) for p in params]
    for grads in _batch_grads(model, data, params):  # the authors' rule: each batch on its own
        for e, g in zip(expected, grads):
            e.mul_(1 - alpha).add_(-alpha * g)
    res = gather_direction(params, data, _loss(model), alpha=alpha, model=model)
    for d, e in zip(res.directions, expected):
        torch.testing.assert_close(d, e, rtol=1e-5, atol=1e-9)


# -- issue 25: buffers a forward resizes in place --------------------------------------------------


class _Resizing(nn.Module):
    """Resizes its buffers in place in forward, as the per-channel observers of a fresh QAT model do; one is
    also held under a second name (observers share tensors), one is a non-contiguous view."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 4)
        self.register_buffer("empty", torch.zeros(0))
        self.register_buffer("scale", torch.ones(1))
        self.register_buffer("table", torch.arange(6.0).reshape(2, 3).t())
        self.same_scale = self.scale

    def forward(self, x):
        out = self.lin(x)
        self.empty.resize_(4).copy_(out.detach().amin(0))
        self.scale.resize_(4).fill_(2.0)
        self.table.resize_(7).fill_(3.0)
        return out


@pytest.mark.parametrize("fails", [False, True], ids=["success", "failure"])
def test_buffers_resized_in_forward_get_their_shape_storage_and_values_back(fails):
    torch.manual_seed(0)
    model = _Resizing()
    data = [(torch.randn(5, 3), torch.randint(0, 4, (5,))) for _ in range(3)]
    layout = {n: (b, b.shape, b.stride(), b.storage_offset()) for n, b in model.named_buffers()}
    before = snapshot(model)
    params = list(model.parameters())
    if fails:
        with pytest.raises(_Boom):
            gather_direction(params, _failing_loader(data, 2), _loss(model), model=model)
        assert_unchanged(before, model)
    else:
        gather_direction(params, data, _loss(model), model=model)
        assert_unchanged(before, model, weights=False)
    for name, (tensor, shape, stride, offset) in layout.items():
        b = dict(model.named_buffers())[name]
        assert b is tensor and (b.shape, b.stride(), b.storage_offset()) == (shape, stride, offset), name
    assert model.same_scale is model.scale and torch.equal(model.scale, torch.ones(1))
    assert torch.equal(model.table, torch.arange(6.0).reshape(2, 3).t())
