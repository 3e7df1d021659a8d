"""The causal transformer: shapes, causality, its next-token loss, and DASH on its Linear layers only."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torch_dash_optim import DASHWrapper
from torch_dash_optim.experiments.text import CausalLM, next_token_loss


def test_model_shapes_and_layers() -> None:
    model = CausalLM(context=12, width=16, heads=4, layers=2)
    assert model(torch.randint(0, 256, (3, 12))).shape == (3, 12, 256)
    assert model(torch.randint(0, 256, (3, 5))).shape == (3, 5, 256)
    attn = model.blocks[0].attn
    assert all(isinstance(getattr(attn, n), nn.Linear) for n in ("q", "k", "v", "out"))
    assert model.head.weight.data_ptr() != model.tok.weight.data_ptr()  # untied
    assert not any(isinstance(m, nn.MultiheadAttention) for m in model.modules())
    with pytest.raises(ValueError, match="longer than the model's context=12"):
        model(torch.randint(0, 256, (1, 13)))


def test_a_later_token_never_changes_an_earlier_position() -> None:
    torch.manual_seed(0)
    model = CausalLM(context=10, width=16, heads=2, layers=2).eval()
    x = torch.randint(0, 256, (2, 10))
    for j in (0, 4, 9):
        y = x.clone()
        y[:, j] = (y[:, j] + 1) % 256
        with torch.no_grad():
            a, b = model(x), model(y)
        assert torch.equal(a[:, :j], b[:, :j])  # positions before j see nothing of token j
        assert not torch.allclose(a[:, j:], b[:, j:])  # from j on, they do


def test_next_token_loss_predicts_the_following_byte() -> None:
    model = CausalLM(context=4, width=8, heads=2, layers=1)
    batch = torch.randint(0, 256, (3, 5))
    logits = model(batch[:, :4])
    want = nn.functional.cross_entropy(logits.reshape(-1, 256), batch[:, 1:].reshape(-1))
    assert torch.allclose(next_token_loss(model, batch), want)


def test_dash_shrinks_every_linear_layer_and_leaves_embeddings_and_norms_alone() -> None:
    torch.manual_seed(0)
    model = CausalLM(context=8, width=16, heads=2, layers=2)
    opt = DASHWrapper(torch.optim.AdamW(model.parameters(), lr=1e-2), model=model, batch_loss=next_token_loss)
    data = torch.randint(0, 256, (32, 9))
    for batch in data.split(8):  # train a little so the weights and the gradient are not at init
        opt.zero_grad()
        next_token_loss(model, batch).backward()
        opt.step()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    report = opt.on_new_data(list(data.split(8)))
    linear = {f"{n}.{p}" for n, m in model.named_modules() if isinstance(m, nn.Linear) for p in ("weight", "bias")}
    assert {p.name for p in report.params} == linear
    for block in ("blocks.0", "blocks.1"):
        assert {f"{block}.attn.{x}.weight" for x in ("q", "k", "v", "out")} <= linear
        assert {f"{block}.mlp.fc.weight", f"{block}.mlp.proj.weight"} <= linear
    assert "head.weight" in linear
    others = set(before) - linear
    assert others == {"tok.weight", "pos.weight", "ln_f.weight", "ln_f.bias"} | {
        f"blocks.{i}.{ln}.{p}" for i in (0, 1) for ln in ("ln1", "ln2") for p in ("weight", "bias")
    }
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], before[n]) for n in others)
    assert set(report.skipped) == others
    shrunk = [n for n in linear if not torch.equal(params[n], before[n])]
    assert "head.weight" in shrunk and len(shrunk) >= len(linear) // 2
    assert report.mean_factor < 1.0
