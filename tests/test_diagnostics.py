"""Plasticity diagnostics: each figure against its formula, and nothing left behind.

The rank formulas on their own are tested in ``tests/test_ranks.py``.
"""

from __future__ import annotations

import math

import pytest
import torch
from _snapshot import assert_unchanged, snapshot
from _spectra import entropy_rank, with_singular_values
from torch import nn

from torch_dash_optim import DASHWrapper, diagnostics, ranks
from torch_dash_optim.diagnostics import CosineStats, Diagnostics, diagnose, dormant_scores


# -- the formulas on fixed values -----------------------------------------------------------------
def test_dormant_scores_by_hand():
    mean_abs = torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0, 0.05])
    mean = 3.05 / 6
    torch.testing.assert_close(dormant_scores(mean_abs), mean_abs / mean)
    assert dormant_scores(torch.zeros(3)).tolist() == [0.0, 0.0, 0.0]


def test_cosine_stats_by_hand():
    s = CosineStats.of(torch.tensor([[-1.0], [-0.5], [0.0], [0.5], [1.0]]))
    assert (s.units, s.mean, s.min, s.median, s.max) == (5, 0.0, -1.0, 0.0, 1.0)
    assert s.negative == pytest.approx(0.4)
    assert s.q10 == pytest.approx(-0.8) and s.q90 == pytest.approx(0.8)  # linear interpolation


# -- dormant units in the pass --------------------------------------------------------------------
def _dead_mlp() -> nn.Sequential:
    """Hidden features relu(b) with b = (0, -1, 1, 1, 1, 0.05): E|h| = (0, 0, 1, 1, 1, 0.05)."""
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.copy_(torch.tensor([0.0, -1.0, 1.0, 1.0, 1.0, 0.05]))
    return model


@pytest.mark.parametrize(("tau", "share"), [(0.0, 2 / 6), (0.05, 2 / 6), (0.1, 3 / 6), (1.0, 3 / 6), (2.0, 1.0)])
def test_dormant_share_of_a_layer_with_known_dead_units(tau, share):
    # scores: E|h| / mean = (0, 0, 1.967, 1.967, 1.967, 0.0984), mean = 3.05 / 6
    model = _dead_mlp()
    loader = [torch.randn(8, 4) for _ in range(3)]
    d = diagnose(model, loader, tau=tau)
    layer = {r.name: r for r in d.layers}
    assert layer["2"].in_features == 6
    assert layer["2"].dormant == pytest.approx(share)
    assert layer["0"].dormant is None and layer["0"].in_features is None  # layer 0 reads the data
    assert d.to_dict()["dormant/2"] == pytest.approx(share)
    assert "dormant/0" not in d.to_dict()
    assert d.dormant == pytest.approx(share)


def test_conv_dormant_scores_average_over_batch_and_positions():
    """A 1x1 identity conv, ReLU, then a conv that reads relu(x): E|h_c| over (batch, H, W) by hand."""
    model = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU(), nn.Conv2d(3, 2, 3))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        model[0].bias.zero_()
    x = torch.zeros(2, 3, 4, 4)
    x[:, 0] = -1.0  # channel 0: dead
    x[0, 1, 0, 0] = 0.064  # channel 1: one position of 32 -> E|h| = 0.002
    x[:, 2] = 2.0  # channel 2: E|h| = 2
    mean_abs = [0.0, 0.064 / 32, 2.0]
    mean = sum(mean_abs) / 3
    scores = [m / mean for m in mean_abs]  # 0, 0.002999..., 2.997...
    for tau, share in [(0.0, 1 / 3), (0.0029, 1 / 3), (0.0031, 2 / 3), (0.025, 2 / 3)]:
        assert share == sum(s <= tau for s in scores) / 3
        d = diagnose(model, [x[:1], x[1:]], tau=tau)
        layer = {r.name: r for r in d.layers}["2"]
        assert layer.in_features == 3
        assert layer.dormant == pytest.approx(share), tau


def test_dormant_share_of_a_large_input_taken_in_slices():
    """An input of more than 2 * 65536 elements is summed slice by slice: the same share."""
    model = _dead_mlp()
    d = diagnose(model, [torch.randn(30000, 4)], tau=0.1)
    assert {r.name: r for r in d.layers}["2"].dormant == pytest.approx(3 / 6)
    conv = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU(), nn.Conv2d(3, 2, 1))
    with torch.no_grad():
        conv[0].weight.zero_()
        conv[0].bias.copy_(torch.tensor([-1.0, 1.0, 0.01]))
    d = diagnose(conv, [torch.randn(64, 3, 32, 32)], tau=0.02)  # scores 0, 2.97, 0.0297
    assert {r.name: r for r in d.layers}["2"].dormant == pytest.approx(1 / 3)


def test_layers_that_read_one_input_each_get_its_share():
    """q, k and v read the same tensor: its sums are computed once and each layer counts them."""

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.q, self.k, self.v = nn.Linear(4, 6), nn.Linear(6, 3), nn.Linear(6, 3), nn.Linear(6, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.fc(x))
            return self.q(h) + self.k(h) * self.v(h)

    model = Attention()
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.copy_(torch.tensor([0.0, -1.0, 1.0, 1.0, 1.0, 0.05]))
    d = diagnose(model, [torch.randn(8, 4) for _ in range(3)], tau=0.1)
    assert {k: v for k, v in d.to_dict().items() if k.startswith("dormant/")} == {
        "dormant/q": 0.5, "dormant/k": 0.5, "dormant/v": 0.5,
    }  # fmt: skip
    assert d.dormant == 0.5


def test_a_layer_that_reads_a_view_of_the_batch_has_no_dormant_share():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.ReLU(), nn.Linear(4, 2))
    d = diagnose(model, [torch.randn(5, 3, 4)])
    layer = {r.name: r for r in d.layers}
    assert layer["1"].dormant is None  # Flatten gives a view of the batch: the data's features
    assert layer["3"].dormant is not None


def test_dormant_share_of_a_transformer_layer():
    """nn.MultiheadAttention does not call out_proj's forward: no input, no dormant share."""
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    d = diagnose(layer, [torch.randn(3, 5, 8)])
    rows = {r.name: r for r in d.layers}
    assert rows["self_attn.out_proj"].in_features is None and rows["self_attn.out_proj"].dormant is None
    assert rows["linear1"].in_features == 8 and rows["linear2"].in_features == 16
    assert rows["linear2"].dormant is not None


# -- weights and features in the pass -------------------------------------------------------------
def test_weight_figures_in_the_pass_follow_the_formulas():
    model = nn.Sequential(nn.Conv2d(1, 2, 2), nn.Flatten(), nn.Linear(18, 4))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].weight[0, 0, 0, 0] = 3.0
        model[0].weight[1, 0, 1, 1] = 1.0
        model[2].weight.zero_()
        model[2].weight[:4, :4] = torch.diag(torch.tensor([4.0, 2.0, 1.0, 1.0]))
    d = diagnose(model, [torch.randn(2, 1, 4, 4)]).to_dict()
    assert d["effective_rank/0.weight"] == pytest.approx(entropy_rank([3.0, 1.0]), rel=1e-6)
    assert d["stable_rank/0.weight"] == pytest.approx(10 / 9)
    assert d["effective_rank/2.weight"] == pytest.approx(entropy_rank([4.0, 2.0, 1.0, 1.0]), rel=1e-6)
    assert d["stable_rank/2.weight"] == pytest.approx(22 / 16)
    assert d["norm/0.weight"] == pytest.approx(math.sqrt(10))
    assert d["norm/2.weight"] == pytest.approx(math.sqrt(22))
    assert d["norm/2.bias"] == pytest.approx(float(model[2].bias.detach().norm()))
    norms = [d[k] for k in d if k.startswith("norm/")]
    assert d["norm"] == pytest.approx(math.sqrt(sum(n * n for n in norms)))
    assert d["effective_rank_ratio"] == pytest.approx((entropy_rank([3, 1]) / 2 + entropy_rank([4, 2, 1, 1]) / 4) / 2)


def _identity_then_head(dim: int) -> nn.Sequential:
    """The head's input is the batch itself, passed through an identity Linear."""
    model = nn.Sequential(nn.Linear(dim, dim), nn.Linear(dim, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(dim))
        model[0].bias.zero_()
    return model


def test_feature_rank_of_the_penultimate_features_with_known_singular_values():
    phi = with_singular_values([8.0, 4.0, 2.0, 1.0, 0.5, 0.25], 64, 12).float()
    model = _identity_then_head(12)
    d = diagnose(model, list(phi.split(16)))  # four batches of 16 rows
    f = d.features
    assert (f.module, f.rows, f.dim, f.rank, f.delta) == ("1", 64, 12, 6, 0.01)
    assert f.effective_rank == pytest.approx(entropy_rank([8.0, 4.0, 2.0, 1.0, 0.5, 0.25]), rel=1e-4)
    assert diagnose(model, list(phi.split(16)), delta=0.12).features.rank == 3
    assert d.to_dict()["feature_rank"] == 6.0


def test_feature_rows_are_capped_at_the_first_rows():
    phi = torch.zeros(40, 6)
    phi[:10, :2] = torch.eye(2).repeat(5, 1)  # the first 10 rows span 2 directions
    phi[10:, 2:] = torch.eye(4).repeat(15, 1)[:30]  # the later rows 4 others
    model = _identity_then_head(6)
    capped = diagnose(model, list(phi.split(8)), max_feature_rows=10).features
    assert (capped.rows, capped.rank) == (10, 2)
    full = diagnose(model, list(phi.split(8))).features
    assert (full.rows, full.rank) == (40, 6)


def test_features_may_name_a_module():
    model = nn.Sequential(nn.Conv2d(1, 3, 1), nn.ReLU(), nn.Conv2d(3, 2, 1), nn.Flatten(), nn.Linear(8, 2))
    d = diagnose(model, [torch.randn(4, 1, 2, 2)], features="2")
    assert (d.features.module, d.features.rows, d.features.dim) == ("2", 16, 3)  # one row per position
    assert diagnose(model, [torch.randn(4, 1, 2, 2)]).features.module == "4"
    with pytest.raises(ValueError, match="names no module"):
        diagnose(model, [torch.randn(4, 1, 2, 2)], features="nope")


def test_a_model_without_a_linear_has_no_feature_rank():
    d = diagnose(nn.Sequential(nn.Conv2d(1, 2, 1)), [torch.randn(2, 1, 3, 3)])
    assert d.features is None and "feature_rank" not in d.to_dict()


# -- DASH's cosines -------------------------------------------------------------------------------
def _cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Dropout(0.5), nn.Linear(64, 5)
    )


def _data(n: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(6, 3, 4, 4, generator=gen), torch.randint(0, 5, (6,), generator=gen)) for _ in range(n)]


@pytest.mark.parametrize(
    "settings", [{}, {"granularity": "neuron", "alpha": 0.5}, {"granularity": "tensor", "alpha": 1.0}]
)
def test_cosines_are_what_on_new_data_clamps_into_its_factors(settings):
    model, data = _cnn(), _data()
    model.train()
    d = diagnose(model, data, loss_fn=nn.CrossEntropyLoss(), **settings)
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss(),
                      lambd=0.3, **settings)  # fmt: skip
    report = opt.on_new_data(data)
    assert set(d.cosines) == set(report.factors) == {"0.weight", "0.bias", "5.weight", "5.bias"}
    for name, factor in report.factors.items():
        assert d.cosines[name].shape == factor.shape, name
        torch.testing.assert_close(d.cosines[name].clamp(0.3, 1.0), factor, rtol=0, atol=2e-6)
    stats = d.cosine_stats()["0.weight"]
    assert stats.units == d.cosines["0.weight"].numel()
    assert d.to_dict()["cosine_median/0.weight"] == stats.median


def test_cosines_need_a_loss_and_default_to_on_when_one_is_given():
    model, data = _cnn(), _data()
    assert diagnose(model, data).cosines == {}
    assert diagnose(model, data, loss_fn=nn.CrossEntropyLoss(), cosines=False).cosines == {}
    assert set(diagnose(model, data, batch_loss=lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1])).cosines)
    with pytest.raises(ValueError, match="needs a loss"):
        diagnose(model, data, cosines=True)


def test_with_cosines_the_figures_come_from_the_gradient_pass_alone():
    """One pass: the gradient pass's forward feeds the hooks (each batch is forwarded once)."""
    model, data = _cnn(), _data()
    calls = []
    model.register_forward_pre_hook(lambda m, a: calls.append(1))
    with_cos = diagnose(model, data, loss_fn=nn.CrossEntropyLoss())
    assert len(calls) == len(data)
    without = diagnose(model, data)
    assert len(calls) == 2 * len(data)
    assert with_cos.to_dict()["dormant/5"] == without.to_dict()["dormant/5"]
    assert with_cos.features.rank == without.features.rank


# -- nothing left behind --------------------------------------------------------------------------
class _Counter(nn.Module):
    """Writes a buffer in forward, in place and by rebinding; records its mode."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("count", torch.zeros(()))
        self.register_buffer("seen", torch.zeros(()))
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.count += 1
        self.seen = self.seen + 1
        self.modes.append(self.training)
        return x


def _probe_model() -> tuple[nn.Sequential, _Counter]:
    torch.manual_seed(0)
    counter = _Counter()
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), counter, nn.Linear(8, 3))
    model.train()
    nn.functional.cross_entropy(model(torch.randn(5, 4)), torch.randint(0, 3, (5,))).backward()
    model[4].bias.grad = None  # one grad None, the others set
    counter.modes.clear()
    return model, counter


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("cosines", [False, True], ids=["forward", "with-cosines"])
def test_nothing_changes_on_success(cosines):
    model, counter = _probe_model()
    data = [(torch.randn(5, 4), torch.randint(0, 3, (5,))) for _ in range(3)]
    before = snapshot(model)
    d = diagnose(model, data, loss_fn=nn.CrossEntropyLoss() if cosines else None)
    assert isinstance(d, Diagnostics) and d.num_batches == 3
    assert counter.modes == [False, False, False]  # eval mode during the pass
    assert_unchanged(before, model)  # weights, grads (values and objects), buffers, modes
    assert _no_hooks(model)


class _Boom(Exception):
    pass


def _failing(data, at: int):
    """The batches of ``data``, failing at index ``at``."""
    for i, batch in enumerate(data):
        if i == at:
            raise _Boom
        yield batch


@pytest.mark.parametrize("cosines", [False, True], ids=["forward", "with-cosines"])
@pytest.mark.parametrize("where", ["loader", "loss", "forward"])
def test_nothing_changes_after_a_failure_mid_pass(cosines, where):
    """The second batch fails (in the loader, the loss, or a layer's forward): all is put back."""
    model, counter = _probe_model()
    data = [(torch.randn(5, 4), torch.randint(0, 3, (5,))) for _ in range(3)]
    losses, forwards = [], []

    def batch_loss(m, batch):
        losses.append(1)
        if where == "loss" and len(losses) == 2:
            raise _Boom
        return nn.functional.cross_entropy(m(batch[0]), batch[1])

    def fail_second_forward(module, args):
        forwards.append(1)
        if where == "forward" and len(forwards) == 2:
            raise _Boom

    handle = model[4].register_forward_pre_hook(fail_second_forward)
    before = snapshot(model)
    with pytest.raises(_Boom):
        diagnose(model, _failing(data, 1) if where == "loader" else data, batch_loss=batch_loss, cosines=cosines)
    assert len(forwards) == (2 if where == "forward" else 1)  # it failed mid-pass, after a batch went through
    handle.remove()
    assert_unchanged(before, model)  # weights, grads, buffers (written in forward), modes
    assert _no_hooks(model)
    assert all(m.training for m in model.modules())


def test_the_user_hooks_stay():
    model = _dead_mlp()
    handle = model[2].register_forward_pre_hook(lambda m, a: None)
    diagnose(model, [torch.randn(3, 4)])
    assert list(model[2]._forward_pre_hooks) == [handle.id]


# -- the API --------------------------------------------------------------------------------------
def test_layers_are_chosen_by_glob_patterns():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    data = [(torch.randn(5, 4), torch.randint(0, 3, (5,)))]
    d = diagnose(model, data, layers=["2", "4"], loss_fn=nn.CrossEntropyLoss())
    assert [r.name for r in d.layers] == ["2", "4"]
    assert set(d.norms) == set(d.cosines) == {"2.weight", "2.bias", "4.weight", "4.bias"}
    assert [r.name for r in diagnose(model, data, layers="[24]").layers] == ["2", "4"]
    with pytest.raises(ValueError, match=r"'fc\*' matches no layer; the layers are: 0, 2, 4"):
        diagnose(model, data, layers=["fc*"])


def test_layers_are_the_ones_dash_would_shrink():
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 3), nn.Linear(3, 3))
    model[3].requires_grad_(False)
    d = diagnose(model, [torch.randn(5, 4)])
    assert [r.name for r in d.layers] == ["0", "2"]  # no norm layer, no frozen layer
    assert set(d.norms) == {"0.weight", "0.bias", "2.weight", "2.bias"}


def test_table_and_dict():
    model, data = _cnn(), _data()
    d = diagnose(model, data, loss_fn=nn.CrossEntropyLoss(), max_batches=2)
    assert d.num_batches == 2
    table = str(d)
    for name in ("0", "5", "dormant", "erank", "srank", "cos median", "feature rank"):
        assert name in table
    flat = d.to_dict()
    assert all(isinstance(v, float) for v in flat.values())
    for key in ("dormant", "norm", "effective_rank_ratio", "stable_rank_ratio", "feature_rank",
                "feature_effective_rank", "cosine_mean", "cosine_negative", "num_batches",
                "effective_rank/0.weight", "stable_rank/5.weight", "norm/0.bias", "cosine_q90/5.weight"):  # fmt: skip
        assert key in flat, key
    all_units = torch.cat([c.flatten() for c in d.cosines.values()])
    assert flat["cosine_mean"] == pytest.approx(float(all_units.mean()), abs=1e-6)
    assert flat["cosine_negative"] == pytest.approx(float((all_units < 0).float().mean()))


def test_batches_of_each_kind_reach_the_model():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x * 1.0)

    net = Net()
    for loader in ([torch.randn(4, 3)], [{"x": torch.randn(4, 3)}], [[torch.randn(4, 3)]]):
        d = diagnose(net, loader)
        assert d.layers[0].in_features == 3 and d.features.rows == 4
    with pytest.raises(TypeError, match="batch_loss"):
        diagnose(net, [3])


def test_a_bare_layer_is_named_model():
    d = diagnose(nn.Linear(3, 2), [torch.randn(4, 3)])
    assert [r.name for r in d.layers] == ["(model)"] and d.layers[0].weight == "weight"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"tau": -0.1}, ValueError, "tau=-0.1"),
        ({"tau": math.nan}, ValueError, "tau=nan"),
        ({"delta": 0.0}, ValueError, "delta=0.0"),
        ({"max_batches": 0}, ValueError, "max_batches=0"),
        ({"max_feature_rows": 0}, ValueError, "max_feature_rows=0"),
        ({"alpha": 0}, ValueError, "alpha=0"),
        ({"granularity": "row"}, ValueError, "granularity"),
        ({"loss_fn": nn.CrossEntropyLoss(), "batch_loss": lambda m, b: 0}, ValueError, "not both"),
    ],
)
def test_bad_settings_are_refused_by_name(kwargs, error, match):
    with pytest.raises(error, match=match):
        diagnose(_dead_mlp(), [torch.randn(3, 4)], **kwargs)


def test_an_empty_loader_is_refused():
    with pytest.raises(ValueError, match="no batch"):
        diagnose(_dead_mlp(), [])
    with pytest.raises(ValueError, match="no batch"):
        diagnose(_dead_mlp(), [], batch_loss=lambda m, b: m(b).sum())


class _Attention(nn.Module):
    """Self-attention over 4 tokens, then a linear head: in_proj_bias has three units (its q, k, v thirds)."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.attn(x, x, x, need_weights=False)[0].mean(1))


def test_cosines_follow_the_unit_rules_of_attention():
    torch.manual_seed(0)
    model = _Attention()
    gen = torch.Generator().manual_seed(2)
    data = [(torch.randn(5, 4, 8, generator=gen), torch.randint(0, 3, (5,), generator=gen)) for _ in range(2)]
    d = diagnose(model, data, loss_fn=nn.CrossEntropyLoss())
    report = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model,
                         loss_fn=nn.CrossEntropyLoss()).on_new_data(data)  # fmt: skip
    assert "attn.in_proj_bias" in report.factors
    assert d.cosine_stats()["attn.in_proj_bias"].units == 3  # one per q, k, v third, as the wrapper's units
    for name, factor in report.factors.items():
        torch.testing.assert_close(d.cosines[name].clamp(0.3, 1.0).expand_as(factor), factor, rtol=0, atol=2e-6)


def test_the_rank_functions_keep_their_former_path_in_diagnostics():
    # defined in ranks since the split of diagnostics; still importable from diagnostics
    for name in ranks.__all__:
        assert getattr(diagnostics, name) is getattr(ranks, name), name
        assert name in diagnostics.__all__, name
