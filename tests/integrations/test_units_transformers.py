"""Hugging Face GPT-2 under DASH: its Conv1D layers are shrunk by their real units (columns), as
the same model with every Conv1D turned into the equivalent nn.Linear is; the embedding tied to
the head is left alone. Tiny random configs: nothing is downloaded."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ._common import need

transformers = need("transformers")
from transformers.pytorch_utils import Conv1D  # noqa: E402

from torch_dash_optim import DASHWrapper  # noqa: E402
from torch_dash_optim.units import EMBEDDING_ROWS  # noqa: E402

VOCAB, CTX = 50, 12


def _gpt2(seed: int = 0) -> nn.Module:
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=CTX, n_embd=16, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(config)
    with torch.no_grad():  # GPT-2 starts its biases at zero, where every bias factor is the floor
        for module in model.modules():
            if isinstance(module, Conv1D):
                module.bias.normal_(std=0.1)
    return model


def _as_linears(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every Conv1D (weight (in, out)) replaced by the equivalent nn.Linear."""
    copy_ = copy.deepcopy(model)
    for name, module in list(copy_.named_modules()):
        if isinstance(module, Conv1D):
            n_in, n_out = module.weight.shape
            linear = nn.Linear(n_in, n_out)
            with torch.no_grad():
                linear.weight.copy_(module.weight.t())
                linear.bias.copy_(module.bias)
            parent, _, attr = name.rpartition(".")
            setattr(copy_.get_submodule(parent), attr, linear)
    return copy_


def _batches(n: int = 3, seed: int = 1) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(0, VOCAB, (4, CTX), generator=g)
        out.append({"input_ids": ids, "labels": ids})
    return out


def _loss(model, batch):
    return model(**batch).loss


def _report(model: nn.Module, data, **kw):
    opt = DASHWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3), model=model, batch_loss=_loss, lambd=0.1, **kw)
    return opt.on_new_data(data)


def test_gpt2_conv1d_is_shrunk_by_columns_and_the_tied_embedding_is_left_alone():
    model = _gpt2()
    assert model.lm_head.weight is model.transformer.wte.weight  # tied, as in every GPT-2
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    report = _report(model, _batches())
    conv = {f"{n}.{k}" for n, m in model.named_modules() if isinstance(m, Conv1D) for k in ("weight", "bias")}
    assert len(conv) == 16 and set(report.factors) == conv  # every Conv1D, and nothing else
    for name in conv:
        p = dict(model.named_parameters())[name]
        f = report.factors[name]
        assert f.shape == ((1, p.shape[1]) if p.ndim == 2 else (1,))  # one unit per column (output)
        torch.testing.assert_close(p, before[name] * f)
    assert report.skipped["transformer.wte.weight"] == (
        "tied weight: shared by lm_head (Linear) and by transformer.wte (Embedding), which does not shrink it; "
        "a weight shared with a module that is not shrunk is left alone"
    )
    assert torch.equal(model.transformer.wte.weight, before["transformer.wte.weight"])
    for name in ("transformer.wpe.weight", "transformer.h.0.ln_1.weight", "transformer.ln_f.bias"):
        assert report.skipped[name] == "not a Conv/Linear parameter"
    assert 0.1 < report.mean_factor < 1.0 and report.at_floor < 1.0


def test_gpt2_conv1d_factors_equal_those_of_the_same_model_with_linears():
    model = _gpt2()
    linear = _as_linears(model)
    data = _batches()
    a, b = _report(model, data), _report(linear, data)
    assert set(a.factors) == set(b.factors)
    assert {p.name: p.units for p in a.params} == {p.name: p.units for p in b.params}
    for name, f in a.factors.items():
        expected = b.factors[name].t() if f.ndim == 2 else b.factors[name]
        torch.testing.assert_close(f, expected, rtol=0, atol=1e-5)
    between = torch.cat([f.flatten() for f in a.factors.values()])
    assert bool(((between > 0.1 + 1e-4) & (between < 1 - 1e-4)).any())  # not all at a bound: a real check


def test_without_the_model_the_shape_rule_takes_rows_and_the_model_gives_columns():
    model = _gpt2()
    weights = [p for n, p in model.named_parameters() if n.endswith("c_fc.weight")]
    in_out = tuple(weights[0].shape)  # (16, 64): stored (in, out)
    bare = DASHWrapper(torch.optim.SGD(weights, lr=0.1), batch_loss=lambda _, batch: _loss(model, batch), lambd=0.1)
    report = bare.on_new_data(_batches(1))
    assert report.factors["param[0]"].shape == (in_out[0], 1)  # shapes only: one unit per input row
    report = DASHWrapper(torch.optim.SGD(weights, lr=0.1), model=model, batch_loss=_loss).on_new_data(_batches(1))
    assert report.factors["transformer.h.0.mlp.c_fc.weight"].shape == (1, in_out[1])  # columns: output units


def test_with_embedding_rows_the_tied_table_is_shrunk_once_by_rows():
    model = _gpt2()
    before = model.transformer.wte.weight.detach().clone()
    report = _report(model, _batches(), unit_rules={nn.Embedding: EMBEDDING_ROWS}, exclude="*.wpe")
    f = report.factors["transformer.wte.weight"]
    assert f.shape == (VOCAB, 1) and "lm_head.weight" not in report.factors
    torch.testing.assert_close(model.lm_head.weight, before * f)  # once, not twice


def test_exclude_by_name_on_a_gpt2():
    model = _gpt2()
    report = _report(model, _batches(1), exclude=["*.attn.*"], include="transformer.h.*")
    assert all(".mlp." in name for name in report.factors) and len(report.factors) == 8
    assert report.skipped["transformer.h.1.attn.c_attn.weight"] == "excluded by exclude=['*.attn.*']"
    with pytest.raises(ValueError, match=r"exclude='\*\.atn\.\*' matches no parameter"):
        _report(model, _batches(1), exclude="*.atn.*")
