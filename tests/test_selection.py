"""Which parameters are shrunk: units per parameter, tied weights, groups, patterns, skip reasons.

The unit rules by module type are tested in ``tests/test_units.py``, the names across wrapper
modules in ``tests/test_names.py``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torch_dash_optim import names, selection, units
from torch_dash_optim.selection import select
from torch_dash_optim.units import EMBEDDING_ROWS, Units


def _groups(*params_or_groups):
    return [g if isinstance(g, dict) else {"params": list(g)} for g in params_or_groups]


def test_conv_linear_weights_and_biases_only_with_their_units():
    model = nn.Sequential(
        nn.Conv1d(2, 3, 3), nn.Conv2d(3, 4, 3, bias=False), nn.Conv3d(4, 2, 1), nn.BatchNorm2d(4),
        nn.Embedding(10, 4), nn.LayerNorm(4), nn.Linear(4, 6), nn.ConvTranspose2d(2, 5, 2),
    )
    sel = select(_groups(model.parameters()), model, lambd=0.3, granularity="kernel")
    assert {t.name: t.dims for t in sel.targets} == {
        "0.weight": (2,), "0.bias": (0,), "1.weight": (2, 3), "2.weight": (2, 3, 4), "2.bias": (0,),
        "6.weight": (1,), "6.bias": (0,), "7.weight": (2, 3), "7.bias": (0,),
    }
    assert all(t.groups == 1 for t in sel.targets)
    assert set(sel.skipped) == {"3.weight", "3.bias", "4.weight", "5.weight", "5.bias"}
    assert all(r == "not a Conv/Linear parameter" for r in sel.skipped.values())


@pytest.mark.parametrize(("gran", "conv", "lin"), [("neuron", (1, 2, 3), (1,)), ("tensor", (0, 1, 2, 3), (0, 1))])
def test_granularity_changes_weight_units_not_bias_units(gran, conv, lin):
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(3, 2))
    dims = {t.name: t.dims for t in select(_groups(model.parameters()), model, lambd=0.3, granularity=gran).targets}
    assert dims == {"0.weight": conv, "0.bias": (0,), "2.weight": lin, "2.bias": (0,)}


def test_a_weight_tied_to_a_module_that_is_not_shrunk_is_left_alone_naming_both():
    emb = nn.Embedding(10, 4)
    head = nn.Linear(4, 10, bias=False)
    head.weight = emb.weight
    model = nn.Sequential(emb, head)
    sel = select(_groups(model.parameters()), model, lambd=0.3, granularity="kernel")
    assert sel.targets == []
    reason = sel.skipped["0.weight"]
    assert reason.startswith("tied weight: shared by 1 (Linear) and by 0 (Embedding), which does not shrink it")
    assert len(sel.trainable) == 1


def test_a_tied_weight_is_shrunk_once_when_all_its_modules_agree_on_its_units():
    emb = nn.Embedding(10, 4)
    head = nn.Linear(4, 10, bias=False)
    head.weight = emb.weight
    model = nn.Sequential(emb, head)
    sel = select(_groups(model.parameters()), model, lambd=0.3, granularity="kernel",
                 unit_rules={nn.Embedding: EMBEDDING_ROWS})
    assert [(t.name, t.dims) for t in sel.targets] == [("0.weight", (1,))]  # rows, once


def test_a_weight_tied_between_two_layouts_is_left_alone():
    class InOut(nn.Module):  # stores its weight (in, out)
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(4, 4))

    a, b = nn.Linear(4, 4, bias=False), InOut()
    b.weight = a.weight
    model = nn.ModuleDict({"a": a, "b": b})
    rules = {InOut: {"weight": Units(axis=1)}}
    sel = select(_groups(model.parameters()), model, lambd=0.3, granularity="kernel", unit_rules=rules)
    assert sel.targets == []
    assert sel.skipped["a.weight"] == (
        "tied weight: shared by a (Linear), units over dims (1,) and b (InOut), units over dims (0,), whose units "
        "differ; a tied weight is shrunk only when all its modules split it into the same units"
    )
    # under "tensor" both are one unit: they agree
    sel = select(_groups(model.parameters()), model, lambd=0.3, granularity="tensor", unit_rules=rules)
    assert [(t.name, t.dims) for t in sel.targets] == [("a.weight", (0, 1))]


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



def _dims(model, granularity="kernel", **kw):
    sel = select(_groups(model.parameters()), model, lambd=0.3, granularity=granularity, **kw)
    return {t.name: (t.dims, t.groups) for t in sel.targets}, sel.skipped


# -- include= / exclude= ------------------------------------------------------------------------


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(10, 4)
        self.attn = nn.Linear(4, 4)
        self.mlp = nn.Linear(4, 4)
        self.ln = nn.LayerNorm(4)
        self.lm_head = nn.Linear(4, 10)


def test_exclude_wins_and_include_restricts_with_reasons():
    model = _Tiny()
    dims, skipped = _dims(model, exclude=["lm_head*", "*.bias"])
    assert set(dims) == {"attn.weight", "mlp.weight"}
    assert skipped["lm_head.weight"] == "excluded by exclude=['lm_head*']"
    assert skipped["lm_head.bias"] == "excluded by exclude=['lm_head*', '*.bias']"
    dims, skipped = _dims(model, include="attn", exclude="*.bias")
    assert set(dims) == {"attn.weight"}
    assert skipped["mlp.weight"] == "not matched by include=['attn']"
    assert skipped["attn.bias"] == "excluded by exclude=['*.bias']"
    # include never adds a parameter that no rule shrinks
    dims, skipped = _dims(model, include=["wte", "ln"])
    assert dims == {} and skipped["wte.weight"] == skipped["ln.weight"] == "not a Conv/Linear parameter"


def test_a_group_with_dash_false_is_never_shrunk_whatever_include_says():
    model = _Tiny()
    groups = [{"params": list(model.attn.parameters()), "dash": False},
              {"params": [p for n, p in model.named_parameters() if not n.startswith("attn")]}]
    sel = select(groups, model, lambd=0.3, granularity="kernel", include="attn.*")
    assert sel.targets == []
    assert sel.skipped["attn.weight"] == 'excluded by its param group ("dash": False)'


def test_patterns_match_module_names_and_every_name_of_a_tied_weight():
    model = _Tiny()
    model.lm_head.weight = model.wte.weight  # reported as wte.weight
    dims, skipped = _dims(model, unit_rules={nn.Embedding: EMBEDDING_ROWS}, exclude="lm_head")
    assert skipped["wte.weight"] == "excluded by exclude=['lm_head']"
    dims, _ = _dims(model, unit_rules={nn.Embedding: EMBEDDING_ROWS}, include="lm_head.weight")
    assert set(dims) == {"wte.weight"}


def test_a_pattern_that_matches_nothing_is_refused_naming_the_parameters():
    model = _Tiny()
    with pytest.raises(ValueError, match=r"exclude='lm_haed\*' matches no parameter of the optimizer.*"
                                         r"its 9 parameters are named like 'wte.weight', .*close names: 'lm_head"):
        _dims(model, exclude="lm_haed*")
    # a pattern must match one of the optimizer's parameters, not merely the model's
    groups = _groups(model.attn.parameters())
    with pytest.raises(ValueError, match="include='mlp' matches no parameter"):
        select(groups, model, lambd=0.3, granularity="kernel", include="mlp")
    with pytest.raises(TypeError, match="exclude= takes a glob pattern"):
        _dims(model, exclude=3)
    with pytest.raises(TypeError, match="patterns must be str"):
        _dims(model, exclude=["ok", None])
    with pytest.raises(ValueError, match=r"include=\[\] selects no parameter"):
        _dims(model, include=[])


def test_patterns_without_a_model_match_the_ordinal_names():
    w, v = nn.Parameter(torch.ones(3, 2)), nn.Parameter(torch.ones(3, 2))
    sel = select(_groups([w, v]), None, lambd=0.3, granularity="kernel", exclude="param[[]1]")
    assert [t.name for t in sel.targets] == ["param[0]"]


def test_the_unit_rules_and_names_keep_their_former_path_in_selection():
    # defined in units and names since the split of selection; still importable from selection
    for module in (units, names):
        for name in module.__all__:
            assert getattr(selection, name) is getattr(module, name), name
            assert name in selection.__all__, name
