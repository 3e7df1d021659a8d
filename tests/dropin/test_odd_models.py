"""Odd models: frozen and unreached parameters, tied weights, channels_last, non-contiguous
parameters, param groups added after wrapping, several groups with their own lr and lambd."""

from __future__ import annotations

from typing import Any

import torch
from _reference import dash_reference
from torch import nn

from torch_dash_optim import DASHWrapper

from ._common import image_batches, tiny_cnn, tiny_mlp, train, vector_batches

CE = nn.CrossEntropyLoss()


def _expected(model: nn.Module, data: list[Any], **kwargs: Any) -> dict[str, torch.Tensor]:
    """Every parameter after one shrink, from the float64 reference that shares no code with the package."""
    return dash_reference(model, data, CE, **kwargs)


def _assert_matches(model: nn.Module, expected: dict[str, torch.Tensor]) -> None:
    """All of the model's parameters (shrunk or not) against the reference, by name."""
    params = dict(model.named_parameters())
    assert params.keys() == expected.keys()
    for name, p in params.items():
        torch.testing.assert_close(p.detach().double(), expected[name], rtol=1e-5, atol=1e-6, msg=name)


def test_frozen_and_unreached_parameters_are_skipped_and_counted() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 8)
            self.b = nn.Linear(8, 3)
            self.unused = nn.Linear(8, 3)
            self.frozen_outside = nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(torch.relu(self.frozen_outside(torch.relu(self.a(x)))))

    model = Net()
    model.a.weight.requires_grad_(False)  # frozen but in the optimizer
    model.frozen_outside.requires_grad_(False)  # frozen and left out of the optimizer
    opt = DASHWrapper(
        torch.optim.SGD([p for n, p in model.named_parameters() if not n.startswith("frozen")], lr=0.1),
        model=model,
        loss_fn=CE,
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    data = vector_batches(2)
    expected = _expected(model, data, include=lambda name: not name.startswith("frozen"))
    report = opt.on_new_data(data)
    assert report.skipped["a.weight"] == "frozen (requires_grad=False)"
    assert report.skipped["unused.weight"] == report.skipped["unused.bias"] == "no gradient reached it"
    assert report.skipped["frozen_outside.weight"] == "not in the optimizer"
    assert len(report.skipped) == 5 and "left alone: 5" in str(report)  # counted in the report
    assert [p.name for p in report.params] == ["a.bias", "b.weight", "b.bias"]
    for n in ("a.weight", "unused.weight", "unused.bias", "frozen_outside.weight"):
        assert torch.equal(dict(model.named_parameters())[n], before[n])
    _assert_matches(model, expected)
    assert model.a.weight.grad is None and model.unused.weight.grad is None


def test_tied_weights_are_shrunk_once() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = nn.Linear(6, 6, bias=False)
            self.dec = nn.Linear(6, 6)
            self.dec.weight = self.enc.weight  # tied
            self.head = nn.Linear(6, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.tanh(self.dec(torch.tanh(self.enc(x)))))

    torch.manual_seed(0)
    model = Tied()
    g = torch.Generator().manual_seed(2)
    data = [(torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(3)]
    expected = _expected(model, data)
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=CE)
    report = opt.on_new_data(data)
    names = [p.name for p in report.params]
    assert names.count("enc.weight") == 1 and "dec.weight" not in names
    assert model.dec.weight is model.enc.weight
    _assert_matches(model, expected)  # enc.weight shrunk once, not twice


def test_channels_last_and_non_contiguous_parameters() -> None:
    data = image_batches(3)
    reference = tiny_cnn()
    expected = _expected(reference, data)

    model = tiny_cnn().to(memory_format=torch.channels_last)
    model[5].weight = nn.Parameter(model[5].weight.detach().t().contiguous().t())  # column-major
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not model[5].weight.is_contiguous()
    strides = {n: p.stride() for n, p in model.named_parameters()}
    ids = {n: id(p) for n, p in model.named_parameters()}
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), model=model, loss_fn=CE)
    opt.on_new_data([(x.to(memory_format=torch.channels_last), y) for x, y in data])
    for n, p in model.named_parameters():
        assert p.stride() == strides[n] and id(p) == ids[n], f"{n} lost its layout or identity"
    _assert_matches(model, expected)


def test_add_param_group_after_wrapping() -> None:
    model = tiny_mlp()
    opt = DASHWrapper(torch.optim.SGD(model[0].parameters(), lr=0.1), model=model, loss_fn=CE, lambd=0.3)
    data = vector_batches(2)
    first = opt.on_new_data(data)
    assert first.skipped["2.weight"] == "not in the optimizer"
    opt.add_param_group({"params": model[2].parameters(), "lr": 0.01, "dash_lambd": 0.9})
    assert len(opt.optimizer.param_groups) == 2
    expected = _expected(model, data, lambd={"0.weight": 0.3, "0.bias": 0.3, "2.weight": 0.9, "2.bias": 0.9})
    second = opt.on_new_data(data)
    _assert_matches(model, expected)
    by_name = {p.name: p for p in second.params}
    assert set(by_name) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert by_name["2.weight"].lambd == 0.9 and by_name["2.weight"].min >= 0.9 - 1e-6
    assert by_name["0.weight"].lambd == 0.3


def test_several_param_groups_keep_their_lr_and_settings() -> None:
    model = tiny_cnn()
    groups = [
        {"params": model[0].parameters(), "lr": 0.1, "dash_granularity": "neuron"},
        {"params": model[1].parameters(), "lr": 0.05},  # BatchNorm: not Conv/Linear
        {"params": [model[5].weight], "lr": 0.01, "dash_lambd": 0.8},
        {"params": [model[5].bias], "lr": 0.02, "dash": False},
    ]
    opt = DASHWrapper(torch.optim.SGD(groups, lr=1.0, momentum=0.9), model=model, loss_fn=CE, lambd=0.2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    data = image_batches(2)
    train(opt, model, data[:1])
    bias = model[5].bias.detach().clone()
    expected = _expected(
        model,
        data,
        lambd={"0.weight": 0.2, "0.bias": 0.2, "5.weight": 0.8},
        granularity={"0.weight": "neuron"},
        include=lambda name: name != "5.bias",
    )
    report = opt.on_new_data(data)
    _assert_matches(model, expected)
    sched.step()
    assert [g["lr"] for g in opt.optimizer.param_groups] == [0.05, 0.025, 0.005, 0.01]
    by_name = {p.name: p for p in report.params}
    assert by_name["0.weight"].units == 4  # neuron granularity: one factor per output filter
    assert by_name["0.weight"].lambd == 0.2 and by_name["5.weight"].lambd == 0.8
    assert by_name["5.weight"].min >= 0.8 - 1e-6
    assert report.skipped["5.bias"] == 'excluded by its param group ("dash": False)'
    assert report.skipped["1.weight"] == "not a Conv/Linear parameter"
    assert torch.equal(model[5].bias, bias)
