"""DASHReport.apply_to: the factors of a call applied to an averaged copy of the model."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from torch_dash_optim import DASHReport, DASHWrapper


def _shrunk():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9))
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss(),
                      lambd=0.1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    report = opt.on_new_data([(torch.randn(16, 4), torch.randint(0, 3, (16,)))])
    return model, ema, report, before


def test_apply_to_an_averaged_model_scales_the_same_named_parameters():
    model, ema, report, before = _shrunk()
    assert report.mean_factor < 0.9
    applied = report.apply_to(ema)
    assert applied == [f"module.{n}" for n in report.factors]
    for name, p in ema.module.named_parameters():
        if name in report.factors:
            torch.testing.assert_close(p, before[name] * report.factors[name])
            torch.testing.assert_close(p, dict(model.named_parameters())[name])
        else:  # BatchNorm parameters are not shrunk
            torch.testing.assert_close(p, before[name])


def test_apply_to_a_mapping_and_a_compiled_prefix():
    model, _, report, before = _shrunk()
    weights = {f"_orig_mod.{n}": t.clone() for n, t in before.items()}
    assert sorted(report.apply_to(weights)) == sorted(f"_orig_mod.{n}" for n in report.factors)
    for name in report.factors:
        torch.testing.assert_close(weights[f"_orig_mod.{name}"], dict(model.named_parameters())[name])


def test_apply_to_fails_before_changing_anything():
    model, ema, report, before = _shrunk()
    other = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 5))  # last layer differs
    snapshot = copy.deepcopy(other.state_dict())
    with pytest.raises(ValueError, match=r"'3.weight' has shape \(5, 8\) in the target but \(3, 8\)"):
        report.apply_to(other)
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in snapshot.items())

    partial = nn.Sequential(nn.Linear(4, 8))
    kept = partial[0].weight.detach().clone()
    with pytest.raises(KeyError, match="no tensor for the shrunk parameter '3.weight'"):
        report.apply_to(partial)
    assert torch.equal(partial[0].weight, kept)
    assert report.apply_to(partial, strict=False) == ["0.weight", "0.bias"]

    rebuilt = DASHReport(**{k: v for k, v in report.to_dict().items() if k not in ("mean_factor", "at_floor")})
    with pytest.raises(ValueError, match="carries no factors"):
        rebuilt.apply_to(ema)
    with pytest.raises(TypeError, match="must be a torch.nn.Module or a mapping"):
        report.apply_to([1, 2])


class _Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return torch.tanh(self.fc(x))


class _WithChildNamedModule(nn.Module):
    """The audit's example: an encoder held as ``self.module`` (with its ``fc``) beside a head ``self.fc``."""

    def __init__(self):
        super().__init__()
        self.module = _Encoder()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.module(x))


def test_a_child_named_module_is_reported_and_applied_under_its_own_names():
    torch.manual_seed(0)
    model = _WithChildNamedModule()
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss(),
                      lambd=0.1)
    report = opt.on_new_data([(torch.randn(16, 4), torch.randint(0, 3, (16,)))])
    names = [p.name for p in report.params]
    assert names == ["module.fc.weight", "module.fc.bias", "fc.weight", "fc.bias"]  # distinct, none lost
    assert len(report.factors) == 4
    applied = report.apply_to(ema, strict=True)
    assert sorted(applied) == sorted(f"module.{n}" for n in names)  # as the AveragedModel names them
    for name, p in ema.module.named_parameters():  # every shrunk tensor of the EMA got its own factor
        torch.testing.assert_close(p, before[name] * report.factors[name])
        torch.testing.assert_close(p, dict(model.named_parameters())[name])


def test_apply_to_a_state_dict_finds_the_one_prefix_common_to_all_names():
    torch.manual_seed(0)
    model = _WithChildNamedModule()
    ema = AveragedModel(model)
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss(),
                      lambd=0.1)
    report = opt.on_new_data([(torch.randn(16, 4), torch.randint(0, 3, (16,)))])
    weights = ema.state_dict()  # "n_averaged", "module.module.fc.weight", "module.fc.weight", ...
    kept = {k: v.clone() for k, v in weights.items()}
    applied = report.apply_to(weights)
    # exact names would match module.fc.* to the wrong tensors and miss fc.*: the prefix "module." fits all
    assert sorted(applied) == sorted(f"module.{n}" for n in report.factors)
    for name, f in report.factors.items():
        torch.testing.assert_close(weights[f"module.{name}"], kept[f"module.{name}"] * f)
    partial = {k: kept[k].clone() for k in ("module.module.fc.weight", "module.fc.weight")}
    with pytest.raises(KeyError, match=r"no tensor for the shrunk parameter 'module.fc.bias' \(nor under the prefix "
                                       r"'module.' that matches the others\); matched 2 of 4 names"):
        report.apply_to(partial)
    assert sorted(report.apply_to(partial, strict=False)) == sorted(partial)


def test_a_wrapper_module_that_is_not_known_is_matched_by_its_prefix():
    class Ema(nn.Module):  # as timm's ModelEmaV3: the copy is a child called "module"
        def __init__(self, model):
            super().__init__()
            self.module = copy.deepcopy(model)

    model, _, report, before = _shrunk()
    ema = Ema(nn.Sequential(*[copy.deepcopy(m) for m in model]))
    for name, p in ema.module.named_parameters():
        with torch.no_grad():
            p.copy_(before[name])
    assert sorted(report.apply_to(ema)) == sorted(f"module.{n}" for n in report.factors)
    for name, p in ema.module.named_parameters():
        torch.testing.assert_close(p, dict(model.named_parameters())[name])
