"""The unit rules by module type: the units each rule gives (through ``select``), and end to end.

End to end, each layout gives the factors of its equivalent plain layers:
``nn.MultiheadAttention`` (alone and inside ``nn.TransformerEncoderLayer``) against the same
attention written with separate q, k and v ``nn.Linear`` layers; ``nn.ConvTranspose2d`` against
an independent float64 computation over its output channels; embedding rows (opt-in) and a
user's own layer through the wrapper. transformers' ``Conv1D`` (GPT-2) is in
``tests/integrations/test_units_transformers.py``.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as TF
from _reference import factors_reference
from torch import nn

from torch_dash_optim import DASHWrapper
from torch_dash_optim.selection import select
from torch_dash_optim.units import EMBEDDING_ROWS, Units, register_unit_rule, unit_rule_for, unregister_unit_rule

E, HEADS, L = 8, 2, 5


class SeparateAttention(nn.Module):
    """``nn.MultiheadAttention`` (batch_first) with q, k, v as three ``nn.Linear``: the same function."""

    def __init__(self, mha: nn.MultiheadAttention) -> None:
        super().__init__()
        self.num_heads = mha.num_heads
        self.q, self.k, self.v = (nn.Linear(E, E) for _ in range(3))
        with torch.no_grad():
            for layer, w, b in zip((self.q, self.k, self.v), mha.in_proj_weight.chunk(3), mha.in_proj_bias.chunk(3)):
                layer.weight.copy_(w)
                layer.bias.copy_(b)
        self.out_proj = copy.deepcopy(mha.out_proj)

    def forward(self, query, key, value, **_: object):
        n, length, _ = query.shape

        def heads(x):
            return x.view(n, -1, self.num_heads, E // self.num_heads).transpose(1, 2)

        o = TF.scaled_dot_product_attention(heads(self.q(query)), heads(self.k(key)), heads(self.v(value)))
        return self.out_proj(o.transpose(1, 2).reshape(n, length, E)), None


class Attend(nn.Module):
    def __init__(self, attn: nn.Module) -> None:
        super().__init__()
        self.attn = attn
        self.head = nn.Linear(E, 3)

    def forward(self, x):
        return self.head(self.attn(x, x, x, need_weights=False)[0].mean(1))


def _random_biases(mha: nn.MultiheadAttention) -> nn.MultiheadAttention:
    with torch.no_grad():  # torch starts them at zero, where every bias factor is the floor
        mha.in_proj_bias.normal_()
        mha.out_proj.bias.normal_()
    return mha


def _data(seed: int = 1, n: int = 3):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, L, E, generator=g), torch.randint(0, 3, (4,), generator=g)) for _ in range(n)]


def _factors(model: nn.Module, data, granularity: str = "kernel", **kw) -> dict[str, torch.Tensor]:
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss(),
                      lambd=0.0, granularity=granularity, **kw)
    report = opt.on_new_data(data)
    return {**report.factors, "_units": {p.name: p.units for p in report.params}}  # type: ignore[dict-item]


def _assert_bias_close(fused: torch.Tensor, separate: torch.Tensor) -> None:
    """The q and v thirds of the bias factors. The key bias gets no gradient in exact arithmetic
    (softmax is shift-invariant), so its direction is rounding noise in both models, and so is
    its factor: it is left out."""
    for third in (slice(0, E), slice(2 * E, 3 * E)):
        torch.testing.assert_close(fused[third], separate[third], rtol=0, atol=2e-5)


def _qkv(f: dict[str, torch.Tensor], prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The separate model's q, k, v factors laid out as the fused in_proj_weight/in_proj_bias factors."""
    weight = torch.cat([f[f"{prefix}.{n}.weight"].expand(E, 1) for n in "qkv"])
    bias = torch.cat([f[f"{prefix}.{n}.bias"].expand(E) for n in "qkv"])
    return weight, bias


@pytest.mark.parametrize("granularity", ["kernel", "neuron", "tensor"])
def test_multihead_attention_gets_the_factors_of_separate_q_k_v_linears(granularity):
    torch.manual_seed(0)
    fused = Attend(_random_biases(nn.MultiheadAttention(E, HEADS, batch_first=True)))
    separate = Attend(SeparateAttention(fused.attn))
    separate.head.load_state_dict(fused.head.state_dict())
    data = _data()
    a, b = _factors(fused, data, granularity), _factors(separate, data, granularity)
    weight, bias = _qkv(b, "attn")
    torch.testing.assert_close(a["attn.in_proj_weight"].expand(3 * E, 1), weight, rtol=0, atol=2e-5)
    _assert_bias_close(a["attn.in_proj_bias"], bias)
    for name in ("attn.out_proj.weight", "attn.out_proj.bias", "head.weight", "head.bias"):
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=2e-5)
    assert a["_units"]["attn.in_proj_bias"] == 3  # one unit per projection's bias
    expected_rows = 3 * E if granularity != "tensor" else 3
    assert a["_units"]["attn.in_proj_weight"] == expected_rows == sum(b["_units"][f"attn.{n}.weight"] for n in "qkv")
    fused_bias = a["attn.in_proj_bias"]
    assert all(len(set(fused_bias[k * E : (k + 1) * E].tolist())) == 1 for k in range(3))  # one factor per third
    assert fused_bias[0] != fused_bias[2 * E]  # the q and v biases got factors of their own


class EncoderClassifier(nn.Module):
    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer
        self.head = nn.Linear(E, 3)

    def forward(self, x):
        return self.head(self.layer(x).mean(1))


def test_a_transformer_encoder_layer_gets_the_factors_of_separate_q_k_v_linears():
    torch.manual_seed(0)
    fused = EncoderClassifier(nn.TransformerEncoderLayer(E, HEADS, dim_feedforward=16, dropout=0.0, batch_first=True))
    _random_biases(fused.layer.self_attn)
    separate = copy.deepcopy(fused)
    separate.layer.self_attn = SeparateAttention(fused.layer.self_attn)
    data = _data(2)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # its checks read attributes the separate attention lacks
    try:
        a, b = _factors(fused, data), _factors(separate, data)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    weight, bias = _qkv(b, "layer.self_attn")
    torch.testing.assert_close(a["layer.self_attn.in_proj_weight"], weight, rtol=0, atol=2e-5)
    _assert_bias_close(a["layer.self_attn.in_proj_bias"], bias)
    shared = set(a) - {"_units", "layer.self_attn.in_proj_weight", "layer.self_attn.in_proj_bias"}
    assert {"layer.linear1.weight", "layer.linear2.weight", "layer.self_attn.out_proj.weight"} <= shared
    for name in shared:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=2e-5)


@pytest.mark.parametrize(("granularity", "groups"), [("neuron", 1), ("neuron", 2), ("kernel", 2), ("tensor", 2)])
def test_conv_transpose_factors_follow_its_output_channels(granularity, groups):
    torch.manual_seed(0)
    model = nn.Sequential(nn.ConvTranspose2d(4, 6, 2, groups=groups), nn.Flatten(), nn.LazyLinear(3))
    g = torch.Generator().manual_seed(3)
    data = [(torch.randn(4, 4, 3, 3, generator=g), torch.randint(0, 3, (4,), generator=g)) for _ in range(2)]
    model(data[0][0])  # materialise the lazy head
    w0 = model[0].weight.detach().clone()
    # the direction, by hand: EMA (alpha 0.3) of the negative gradients
    direction = torch.zeros_like(w0)
    for x, y in data:
        model.zero_grad()
        TF.cross_entropy(model(x), y).backward()
        direction = 0.7 * direction - 0.3 * model[0].weight.grad
    model.zero_grad(set_to_none=True)
    f = _factors(model, data, granularity)["0.weight"]
    # an independent computation: the weight as (out channels, in/g, k, k), units per output channel
    per_out = w0.view(groups, 4 // groups, 6 // groups, 2, 2).permute(0, 2, 1, 3, 4).reshape(6, 4 // groups, 2, 2)
    d_out = direction.view(groups, 4 // groups, 6 // groups, 2, 2).permute(0, 2, 1, 3, 4).reshape(6, 4 // groups, 2, 2)
    if granularity == "neuron":
        ref = factors_reference(per_out, d_out, (1, 2, 3), 0.0).flatten()  # one factor per output channel
        got = f.expand(4, 6 // groups, 1, 1).reshape(groups, 4 // groups, 6 // groups)[:, 0].reshape(6)
        torch.testing.assert_close(got.double(), ref, rtol=0, atol=1e-5)
        assert f.numel() in (6, 4 * 6 // groups)
    elif granularity == "kernel":
        ref = factors_reference(w0, direction, (2, 3), 0.0)  # one factor per (in, out) kernel slice
        torch.testing.assert_close(f.double(), ref, rtol=0, atol=1e-5)
    else:
        ref = factors_reference(w0, direction, (0, 1, 2, 3), 0.0)
        torch.testing.assert_close(f.double(), ref, rtol=0, atol=1e-5)


def test_embedding_rows_are_shrunk_only_when_asked():
    torch.manual_seed(0)

    class Bag(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(20, 6)
            self.fc = nn.Linear(6, 3)

        def forward(self, ids):
            return self.fc(self.emb(ids).mean(1))

    g = torch.Generator().manual_seed(1)
    data = [(torch.randint(0, 20, (8, 5), generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(2)]
    model = Bag()
    before = model.emb.weight.detach().clone()
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss())
    report = opt.on_new_data(data)
    assert "emb.weight" not in report.factors and torch.equal(model.emb.weight, before)
    assert report.skipped["emb.weight"] == "not a Conv/Linear parameter"
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss(),
                      unit_rules={nn.Embedding: EMBEDDING_ROWS})
    report = opt.on_new_data(data)
    f = report.factors["emb.weight"]
    assert f.shape == (20, 1) and {p.name: p.units for p in report.params}["emb.weight"] == 20
    torch.testing.assert_close(model.emb.weight, before * f)


def test_a_users_layer_is_shrunk_by_the_rule_given_for_it():
    class InOut(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(5, 4))  # (in, out)
            self.bias = nn.Parameter(torch.zeros(4))

        def forward(self, x):
            return x @ self.weight + self.bias

    torch.manual_seed(0)
    model = nn.Sequential(InOut(), nn.ReLU(), nn.Linear(4, 3))
    reference = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    with torch.no_grad():
        reference[0].weight.copy_(model[0].weight.t())
        reference[0].bias.copy_(model[0].bias)
        reference[2].load_state_dict(model[2].state_dict())
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(8, 5, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(2)]
    rule = {InOut: {"weight": Units(axis=1), "bias": Units(axis=None)}}
    a, b = _factors(model, data, unit_rules=rule), _factors(reference, data)
    torch.testing.assert_close(a["0.weight"].t(), b["0.weight"], rtol=0, atol=2e-5)
    torch.testing.assert_close(a["0.bias"], b["0.bias"], rtol=0, atol=2e-5)


def _groups(*params_or_groups):
    return [g if isinstance(g, dict) else {"params": list(g)} for g in params_or_groups]


# -- the units of each rule, through select ----------------------------------------------------------------


def _dims(model, granularity="kernel", **kw):
    sel = select(_groups(model.parameters()), model, lambd=0.3, granularity=granularity, **kw)
    return {t.name: (t.dims, t.groups) for t in sel.targets}, sel.skipped


@pytest.mark.parametrize(
    ("gran", "weight"),
    [("kernel", ((2, 3), 1)), ("neuron", ((0, 2, 3), 1)), ("tensor", ((0, 1, 2, 3), 1))],
)
def test_conv_transpose_units_are_its_output_channels(gran, weight):
    dims, _ = _dims(nn.Sequential(nn.ConvTranspose2d(4, 6, 3)), gran)
    assert dims == {"0.weight": weight, "0.bias": ((0,), 1)}


def test_a_grouped_conv_transpose_keeps_its_output_channels_apart():
    # weight (in, out/groups, k, k) = (4, 3, 2, 2); output channel g*3+j is weight[2g:2g+2, j]
    dims, _ = _dims(nn.Sequential(nn.ConvTranspose2d(4, 6, 2, groups=2)), "neuron")
    assert dims["0.weight"] == ((0, 2, 3), 2)
    dims, _ = _dims(nn.Sequential(nn.ConvTranspose2d(4, 6, 2, groups=2)), "tensor")
    assert dims["0.weight"] == ((0, 1, 2, 3), 1)  # one unit for the whole tensor, as for Conv2d


@pytest.mark.parametrize("gran", ["kernel", "neuron", "tensor"])
def test_multihead_attention_units_are_those_of_separate_q_k_v_linears(gran):
    dims, skipped = _dims(nn.Sequential(nn.MultiheadAttention(8, 2, add_bias_kv=True)), gran)
    rows = ((1,), 1) if gran != "tensor" else ((0, 1), 3)
    assert dims == {
        "0.in_proj_weight": rows,
        "0.in_proj_bias": ((0,), 3),  # the q, k and v biases, one unit each
        "0.out_proj.weight": ((1,), 1) if gran != "tensor" else ((0, 1), 1),
        "0.out_proj.bias": ((0,), 1),
    }
    assert skipped["0.bias_k"] == skipped["0.bias_v"]
    assert skipped["0.bias_k"].startswith("a learned key/value appended to the sequence (add_bias_kv=True)")


def test_multihead_attention_with_other_kdim_and_vdim_has_three_weights():
    dims, _ = _dims(nn.Sequential(nn.MultiheadAttention(8, 2, kdim=4, vdim=6)))
    assert dims == {
        "0.q_proj_weight": ((1,), 1), "0.k_proj_weight": ((1,), 1), "0.v_proj_weight": ((1,), 1),
        "0.in_proj_bias": ((0,), 3), "0.out_proj.weight": ((1,), 1), "0.out_proj.bias": ((0,), 1),
    }


def test_embeddings_are_shrunk_by_rows_only_when_asked():
    model = nn.Sequential(nn.Embedding(10, 4), nn.EmbeddingBag(5, 4), nn.Linear(4, 2))
    dims, skipped = _dims(model)
    assert set(dims) == {"2.weight", "2.bias"} and skipped["0.weight"] == "not a Conv/Linear parameter"
    dims, _ = _dims(model, unit_rules={nn.Embedding: EMBEDDING_ROWS, nn.EmbeddingBag: EMBEDDING_ROWS})
    assert dims["0.weight"] == dims["1.weight"] == ((1,), 1)


def test_transformers_conv1d_is_recognised_by_its_qualified_name_without_importing_it():
    conv1d = type("Conv1D", (nn.Module,), {"__module__": "transformers.pytorch_utils"})

    class Sub(conv1d):  # subclasses inherit the rule
        pass

    for cls in (conv1d, Sub):
        layer = cls()
        layer.weight = nn.Parameter(torch.randn(3, 5))  # (in, out)
        layer.bias = nn.Parameter(torch.zeros(5))
        dims, _ = _dims(nn.Sequential(layer))
        assert dims == {"0.weight": ((0,), 1), "0.bias": ((0,), 1)}  # columns; the bias one unit


def test_a_user_registered_rule_applies_to_the_type_and_its_subclasses_until_removed():
    class Scale(nn.Module):  # a per-channel scale (out,) and a weight (k, out)
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(3, 5))
            self.gain = nn.Parameter(torch.ones(5))

    class SubScale(Scale):
        pass

    model = nn.Sequential(Scale(), SubScale())
    assert _dims(model)[0] == {}
    register_unit_rule(Scale, {"weight": Units(axis=1), "gain": "a gain, not a unit's weight"})
    try:
        dims, skipped = _dims(model)
        assert dims == {"0.weight": ((0,), 1), "1.weight": ((0,), 1)}
        assert skipped["0.gain"] == skipped["1.gain"] == "a gain, not a unit's weight"
        register_unit_rule(SubScale, {})  # a subclass can opt out
        dims, skipped = _dims(model)
        assert dims == {"0.weight": ((0,), 1)}
        assert skipped["1.weight"] == "not named by the unit rule of SubScale"
        # a per-wrapper rule wins over the registered one, at the same type
        dims, _ = _dims(model, unit_rules={SubScale: lambda m: {"weight": Units(axis=0)}})
        assert dims == {"0.weight": ((0,), 1), "1.weight": ((1,), 1)}
    finally:
        unregister_unit_rule(SubScale)
        unregister_unit_rule(Scale)
    assert _dims(model)[0] == {} and unit_rule_for(Scale()) is None


def test_bad_rules_are_refused_with_the_fix():
    with pytest.raises(TypeError, match="registered for a torch.nn.Module subclass, or for its qualified class name"):
        register_unit_rule("Conv1D", {})
    with pytest.raises(TypeError, match=r"maps 'weight' to 1; map each parameter name \(a str\) to Units"):
        register_unit_rule(nn.Linear, {"weight": 1})
    with pytest.raises(TypeError, match="must be a mapping of parameter names to Units"):
        select(_groups(nn.Linear(2, 2).parameters()), nn.Linear(2, 2), lambd=0.3, granularity="kernel",
               unit_rules={nn.Linear: [1]})
    with pytest.raises(ValueError, match="stacked must be a positive int; got 0"):
        Units(axis=0, stacked=0)
    with pytest.raises(TypeError, match="axis must be an int or None"):
        Units(axis="rows")
    assert unit_rule_for(nn.Linear(2, 2))["weight"] == Units(axis=0)  # nothing was registered


def test_the_shape_rule_cannot_tell_an_in_out_layout_and_the_model_can():
    conv1d = type("Conv1D", (nn.Module,), {"__module__": "transformers.pytorch_utils"})
    layer = conv1d()
    layer.weight = nn.Parameter(torch.randn(3, 5))  # (in, out)
    model = nn.Sequential(layer)
    [t] = select(_groups([layer.weight]), None, lambd=0.3, granularity="kernel").targets
    assert t.dims == (1,)  # shapes only: taken as (out, in), one unit per row (input dimension)
    [t] = select(_groups([layer.weight]), model, lambd=0.3, granularity="kernel").targets
    assert t.dims == (0,)  # with the model: one unit per column, the output units
