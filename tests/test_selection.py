"""Which parameters are shrunk and how they are split into units."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torch_dash_optim.selection import select


def _groups(*params_or_groups):
    return [g if isinstance(g, dict) else {"params": list(g)} for g in params_or_groups]


def test_conv_linear_weights_and_biases_only_with_their_units():
    model = nn.Sequential(
        nn.Conv1d(2, 3, 3), nn.Conv2d(3, 4, 3, bias=False), nn.Conv3d(4, 2, 1), nn.BatchNorm2d(4),
        nn.Embedding(10, 4), nn.LayerNorm(4), nn.Linear(4, 6), nn.ConvTranspose2d(2, 2, 2),
    )
    sel = select(_groups(model.parameters()), model, lambd=0.3, granularity="kernel")
    assert {t.name: t.dims for t in sel.targets} == {
        "0.weight": (2,), "0.bias": (0,), "1.weight": (2, 3), "2.weight": (2, 3, 4), "2.bias": (0,),
        "6.weight": (1,), "6.bias": (0,),
    }
    assert set(sel.skipped) == {"3.weight", "3.bias", "4.weight", "5.weight", "5.bias", "7.weight", "7.bias"}
    assert all(r == "not a Conv/Linear parameter" for r in sel.skipped.values())


@pytest.mark.parametrize(("gran", "conv", "lin"), [("neuron", (1, 2, 3), (1,)), ("tensor", (0, 1, 2, 3), (0, 1))])
def test_granularity_changes_weight_units_not_bias_units(gran, conv, lin):
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(3, 2))
    dims = {t.name: t.dims for t in select(_groups(model.parameters()), model, lambd=0.3, granularity=gran).targets}
    assert dims == {"0.weight": conv, "0.bias": (0,), "2.weight": lin, "2.bias": (0,)}


def test_tied_weights_are_selected_once():
    emb = nn.Embedding(10, 4)
    head = nn.Linear(4, 10, bias=False)
    head.weight = emb.weight
    model = nn.Sequential(emb, head)
    sel = select(_groups(model.parameters()), model, lambd=0.3, granularity="kernel")
    assert [t.name for t in sel.targets] == ["0.weight"]  # shrunk once, as the Linear weight
    assert len(sel.trainable) == 1


def test_group_overrides_frozen_and_not_in_optimizer():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 3), nn.Linear(3, 1))
    model[0].weight.requires_grad_(False)
    groups = _groups(
        {"params": [model[0].weight, model[0].bias], "dash_lambd": 0.6},
        {"params": list(model[1].parameters()), "dash": False},
        {"params": [model[2].weight], "dash_granularity": "tensor"},
    )
    sel = select(groups, model, lambd=0.3, granularity="kernel")
    assert [(t.name, t.lambd, t.dims) for t in sel.targets] == [("0.bias", 0.6, (0,)), ("2.weight", 0.3, (0, 1))]
    assert sel.skipped == {
        "0.weight": "frozen (requires_grad=False)",
        "1.weight": 'excluded by its param group ("dash": False)',
        "1.bias": 'excluded by its param group ("dash": False)',
        "2.bias": "not in the optimizer",
    }
    assert any(p is model[2].bias for p in sel.trainable)  # its grad is still preserved


def test_shape_rule_without_a_model():
    w2, w4, b = nn.Parameter(torch.ones(3, 2)), nn.Parameter(torch.ones(2, 2, 3, 3)), nn.Parameter(torch.ones(3))
    sel = select(_groups([w2, b, w4]), None, lambd=0.3, granularity="kernel")
    assert [(t.name, t.dims) for t in sel.targets] == [("param[0]", (1,)), ("param[2]", (2, 3))]
    assert sel.skipped == {"param[1]": "1-D parameter without a model (bias or norm scale: left alone)"}


def test_names_drop_compile_and_ddp_prefixes():
    inner = nn.Sequential(nn.Linear(2, 2))
    wrapped = nn.Module()
    wrapped.module = inner  # as DistributedDataParallel names it
    sel = select(_groups(inner.parameters()), wrapped, lambd=0.3, granularity="kernel")
    assert [t.name for t in sel.targets] == ["0.weight", "0.bias"]


def test_an_optimizer_parameter_outside_the_model_is_refused():
    model, other = nn.Linear(2, 2), nn.Linear(2, 2)
    message = r"parameter 2 of the optimizer \(group 1, shape \(2, 2\)\) is not a parameter of the model"
    with pytest.raises(ValueError, match=message):
        select(_groups(model.parameters(), other.parameters()), model, lambd=0.3, granularity="kernel")


def test_bad_group_keys_are_refused():
    model = nn.Linear(2, 2)
    with pytest.raises(TypeError, match='param group 0: "dash" must be True or False'):
        select([{"params": list(model.parameters()), "dash": "no"}], model, lambd=0.3, granularity="kernel")
    with pytest.raises(ValueError, match="param group 0: unknown granularity 'rows'"):
        groups = [{"params": list(model.parameters()), "dash_granularity": "rows"}]
        select(groups, model, lambd=0.3, granularity="kernel")


def test_former_group_keys_are_refused_with_the_new_name():
    model = nn.Linear(2, 2)
    for old, new, value in (("lambd", "dash_lambd", 0.5), ("granularity", "dash_granularity", "neuron")):
        with pytest.raises(ValueError, match=f'param group 0: .*rename "{old}" to "{new}"'):
            select([{"params": list(model.parameters()), old: value}], model, lambd=0.3, granularity="kernel")


def test_a_key_the_optimizer_owns_is_left_to_it():
    model = nn.Linear(2, 2)
    groups = [{"params": list(model.parameters()), "lambd": 2.0}]  # ASGD's own decay, not DASH's floor
    sel = select(groups, model, lambd=0.3, granularity="kernel", owned={"lr", "lambd"})
    assert [t.lambd for t in sel.targets] == [0.3, 0.3]


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_empty_and_complex_parameters_are_skipped_with_a_reason():
    model = nn.Sequential(nn.Linear(4, 0), nn.Linear(4, 3))
    complex_w = nn.Parameter(torch.randn(3, 4, dtype=torch.complex64))
    sel = select([{"params": [*model.parameters(), complex_w]}], None, lambd=0.3, granularity="kernel")
    assert sel.skipped["param[0]"] == "empty (no elements)"
    assert sel.skipped["param[4]"].startswith("complex dtype")
    assert [t.name for t in sel.targets] == ["param[2]"]
    sel = select([{"params": list(model.parameters())}], model, lambd=0.3, granularity="kernel")
    assert sel.skipped["0.weight"] == sel.skipped["0.bias"] == "empty (no elements)"


def test_lazy_parameters_are_refused_before_anything_runs():
    model = nn.Sequential(nn.LazyLinear(3))
    with pytest.raises(ValueError, match="lazy parameter that is not yet initialised.*run one forward pass"):
        select([{"params": list(model.parameters())}], model, lambd=0.3, granularity="kernel")
    assert isinstance(model[0].weight, nn.parameter.UninitializedParameter)
