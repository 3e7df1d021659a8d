"""The options of DASHWrapper, end to end: granularity, average, model=None, batch_loss, groups."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from _models import SmallCNN, make_data, train_steps
from torch import nn

from torch_dash_optim import DASHWrapper
from torch_dash_optim import functional as F


def _expected(model, data, granularity, average="ema", alpha=0.3, lambd=0.3):
    """Shrink a copy by hand: gather per-batch grads, average, per-unit clamp(cos)."""
    ref = copy.deepcopy(model).eval()
    grads = []
    for x, y in data:
        ref.zero_grad()
        nn.functional.cross_entropy(ref(x), y).backward()
        grads.append({n: p.grad.clone() for n, p in ref.named_parameters() if p.grad is not None})
    names = [n for n, m in ref.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        for mod_name in names:
            mod = ref.get_submodule(mod_name)
            for kind in ("weight", "bias"):
                p = getattr(mod, kind)
                if p is None:
                    continue
                key = f"{mod_name}.{kind}"
                if average == "ema":
                    g = torch.zeros_like(p)
                    for gs in grads:
                        g = (1 - alpha) * g + alpha * (-gs[key])
                else:
                    g = -sum(gs[key] for gs in grads) / len(grads)
                dims = F.unit_dims(p.ndim, granularity if kind == "weight" else "tensor")
                cos = torch.nn.functional.cosine_similarity(
                    g.flatten(0, 0).reshape(*[p.shape[i] for i in range(p.ndim) if i not in dims], -1),
                    p.reshape(*[p.shape[i] for i in range(p.ndim) if i not in dims], -1), dim=-1)
                f = cos.clamp(lambd, 1).reshape([1 if i in dims else p.shape[i] for i in range(p.ndim)])
                p.mul_(f)
    return ref


@pytest.mark.parametrize("granularity", ["kernel", "neuron", "tensor"])
@pytest.mark.parametrize("average", ["ema", "mean"])
def test_granularity_and_average_match_a_hand_computation(granularity, average):
    model = SmallCNN()
    data = make_data()
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss(),
                      granularity=granularity, average=average)
    train_steps(model, opt, data)
    ref = _expected(model, data, granularity, average)
    report = opt.on_new_data(data)
    for (n, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=n)
    units = {p.name: p.units for p in report.params}
    assert units["conv1.weight"] == {"kernel": 18, "neuron": 6, "tensor": 1}[granularity]
    assert units["conv1.bias"] == 1


def test_model_none_with_batch_loss_on_dict_batches():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    data = [{"input": torch.randn(5, 3), "labels": torch.randint(0, 2, (5,))} for _ in range(3)]
    seen_models = []

    def batch_loss(m, batch):
        seen_models.append(m)
        return nn.functional.cross_entropy(model(batch["input"]), batch["labels"])

    ref = copy.deepcopy(model)
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), batch_loss=batch_loss)
    report = opt.on_new_data(data)
    assert seen_models == [None] * 3
    assert [p.name for p in report.params] == ["param[0]", "param[2]"]  # 2-D tensors only
    assert set(report.skipped) == {"param[1]", "param[3]"}
    assert torch.equal(model[0].bias, ref[0].bias) and not torch.equal(model[0].weight, ref[0].weight)
    # With a model, batch_loss receives it.
    opt2 = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model,
                       batch_loss=lambda m, b: nn.functional.cross_entropy(m(b["input"]), b["labels"]))
    assert len(opt2.on_new_data(data).params) == 4


def test_per_call_loss_overrides_the_wrapper_loss():
    model = SmallCNN()
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss())
    used = []
    opt.on_new_data(make_data(), loss_fn=lambda out, y: used.append(1) or nn.functional.cross_entropy(out, y))
    assert used == [1, 1, 1]


def test_frozen_excluded_and_unreached_parameters_are_skipped_and_reported():
    model = SmallCNN()
    model.conv1.weight.requires_grad_(False)
    unused = nn.Linear(2, 2)
    model.unused = unused
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.startswith("fc2")]},
        {"params": list(model.fc2.parameters()), "dash": False},
    ]
    opt = DASHWrapper(torch.optim.SGD(groups, lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss())
    before = {n: p.clone() for n, p in model.named_parameters()}
    report = opt.on_new_data(make_data())
    assert report.skipped["conv1.weight"] == "frozen (requires_grad=False)"
    assert report.skipped["fc2.weight"] == 'excluded by its param group ("dash": False)'
    assert report.skipped["unused.weight"] == "no gradient reached it"
    assert report.skipped["bn.weight"] == "not a Conv/Linear parameter"
    for name in ("conv1.weight", "fc2.weight", "unused.weight", "unused.bias", "bn.weight"):
        assert torch.equal(before[name], dict(model.named_parameters())[name]), name
    text = str(report)
    assert "unused.weight: no gradient reached it" in text and "conv2.weight" in text


def test_report_values_and_serialisation():
    model = SmallCNN()
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss(),
                      lambd=0.5)
    report = opt.on_new_data(make_data())
    for p in report.params:
        assert 0.5 <= p.min <= p.mean <= p.max <= 1.0 and 0.0 <= p.at_floor <= 1.0
    biased = {p.name: p for p in report.params}["conv1.bias"]
    assert biased.units == 1 and biased.min == biased.max
    total = sum(p.units for p in report.params)
    assert report.units == total
    assert report.mean_factor == pytest.approx(sum(p.mean * p.units for p in report.params) / total)
    d = json.loads(json.dumps(report.to_dict()))
    assert d["call"] == 1 and d["num_batches"] == 3 and len(d["params"]) == len(report.params)
    lines = str(report).splitlines()
    assert lines[0] == f"DASH call 1: {len(report.params)} parameter(s) shrunk over 3 batch(es)"
    assert lines[1].split() == ["parameter", "shape", "units", "min", "mean", "max", "at", "floor"]
    assert any(line.startswith("all ") for line in lines)
    assert opt.on_new_data(make_data()).call == 2 and opt.num_dash_calls == 2


def test_lambda_one_is_a_no_op_on_weights():
    model = SmallCNN()
    before = [p.clone() for p in model.parameters()]
    DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss(),
                lambd=1.0).on_new_data(make_data())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_no_model_copy_and_the_same_parameter_objects(monkeypatch):
    import copy as copy_module

    model = SmallCNN()
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), model=model,
                      loss_fn=nn.CrossEntropyLoss())
    train_steps(model, opt, make_data())
    ids = [(id(p), p.data_ptr()) for p in model.parameters()]

    def no_copy(*args, **kwargs):
        raise AssertionError("on_new_data must not copy anything")

    monkeypatch.setattr(copy_module, "deepcopy", no_copy)
    monkeypatch.setattr(nn.Module, "state_dict", no_copy)
    opt.on_new_data(make_data())
    assert [(id(p), p.data_ptr()) for p in model.parameters()] == ids
    assert all(p is q for p, q in zip(opt.param_groups[0]["params"], model.parameters()))


def test_asgd_keeps_its_own_lambd_and_dash_uses_the_wrapper_floor():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    data = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(3)]
    asgd = torch.optim.ASGD(model.parameters(), lr=0.01, lambd=2.0)  # valid for ASGD, outside [0, 1]
    opt = DASHWrapper(asgd, model=model, loss_fn=nn.CrossEntropyLoss(), lambd=0.3)
    report = opt.on_new_data(data)
    assert {p.lambd for p in report.params} == {0.3}
    assert min(p.min for p in report.params) >= 0.3 - 1e-7
    assert all(g["lambd"] == 2.0 for g in opt.param_groups)  # ASGD's decay is untouched


def test_per_group_overrides_use_the_dash_prefixed_keys():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    groups = [
        {"params": model[0].parameters(), "dash_lambd": 0.9, "dash_granularity": "tensor"},
        {"params": model[2].parameters(), "lambd": 1e-4},  # ASGD's own key in an ASGD group
    ]
    opt = DASHWrapper(torch.optim.ASGD(groups, lr=0.01), model=model, loss_fn=nn.CrossEntropyLoss(), lambd=0.3)
    report = {p.name: p for p in opt.on_new_data([(torch.randn(8, 4), torch.randint(0, 3, (8,)))]).params}
    assert report["0.weight"].lambd == 0.9 and report["0.weight"].units == 1
    assert report["2.weight"].lambd == 0.3 and report["2.weight"].units == 3
    sgd = torch.optim.SGD([{"params": model.parameters(), "lambd": 0.5}], lr=0.1)
    with pytest.raises(ValueError, match='rename "lambd" to "dash_lambd"'):
        DASHWrapper(sgd, model=model, loss_fn=nn.CrossEntropyLoss())


# -- include= / exclude= ---------------------------------------------------------------------------


def _by_name(**kw):
    torch.manual_seed(0)
    model = SmallCNN()
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss(), **kw)
    return model, opt, make_data(2)


def test_the_wrappers_patterns_choose_the_layers_and_a_call_may_override_them():
    model, opt, data = _by_name(exclude="fc*")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    report = opt.on_new_data(data)
    assert set(report.factors) == {"conv1.weight", "conv1.bias", "conv2.weight"}
    assert report.skipped["fc1.weight"] == report.skipped["fc2.weight"] == "excluded by exclude=['fc*']"
    assert torch.equal(model.fc1.weight, before["fc1.weight"])  # left alone, bit for bit
    assert "fc1.weight: excluded by exclude=['fc*']" in str(report)
    # per call: include overrides the wrapper's include (None), exclude=() drops the wrapper's exclusions
    report = opt.on_new_data(data, include=["fc1", "conv1.weight"], exclude=())
    assert set(report.factors) == {"fc1.weight", "fc1.bias", "conv1.weight"}
    assert report.skipped["conv2.weight"] == "not matched by include=['fc1', 'conv1.weight']"
    report = opt.on_new_data(data)  # the wrapper's own patterns again
    assert set(report.factors) == {"conv1.weight", "conv1.bias", "conv2.weight"}
    assert opt.exclude == ("fc*",) and opt.include is None


def test_a_bad_pattern_is_refused_before_anything_changes():
    message = r"include='classifier\*' matches no parameter of the optimizer.*'conv1.weight'"
    with pytest.raises(ValueError, match=message):
        _by_name(include="classifier*")
    model, opt, data = _by_name()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.raises(ValueError, match="exclude='fc3' matches no parameter"):
        opt.on_new_data(data, exclude=["fc1", "fc3"])
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert opt.num_dash_calls == 0


def test_patterns_and_param_groups_work_together():
    torch.manual_seed(0)
    model = SmallCNN()
    groups = [
        {"params": list(model.conv1.parameters()), "dash": False},
        {"params": list(model.conv2.parameters()) + list(model.bn.parameters()), "dash_lambd": 0.9},
        {"params": list(model.fc1.parameters()) + list(model.fc2.parameters())},
    ]
    opt = DASHWrapper(torch.optim.SGD(groups, lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss(),
                      include=["conv*", "fc1.*"], exclude="*.bias")
    report = opt.on_new_data(make_data(2))
    assert {p.name: p.lambd for p in report.params} == {"conv2.weight": 0.9, "fc1.weight": 0.3}
    assert report.skipped["conv1.weight"] == 'excluded by its param group ("dash": False)'  # include cannot undo it
    assert report.skipped["fc1.bias"] == "excluded by exclude=['*.bias']"
    assert report.skipped["fc2.weight"] == "not matched by include=['conv*', 'fc1.*']"
