"""The Hugging Face DASHCallback on a tiny random GPT-2: the attention and MLP Conv1D layers are
shrunk, by columns (a Conv1D weight is stored (in, out)); the tied wte/lm_head is left alone."""

from __future__ import annotations

import torch

from ._common import need

transformers = need("transformers")
need("accelerate")
from torch_dash_optim import DASHWrapper  # noqa: E402
from torch_dash_optim.integrations.transformers import DASHCallback  # noqa: E402

from .test_transformers import _fresh_accelerate_state  # noqa: E402, F401
from .test_transformers_stages import _args  # noqa: E402

CONV1D = [f"transformer.h.{i}.{layer}.{kind}" for i in range(2) for layer in ("attn.c_attn", "attn.c_proj",
          "mlp.c_fc", "mlp.c_proj") for kind in ("weight", "bias")]  # fmt: skip


def _gpt2():
    config = transformers.GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=2, n_head=2,
                                     bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config)


def _texts(n: int, seed: int) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": ids, "labels": ids} for ids in torch.randint(1, 50, (n, 12), generator=g)]


class Snapshot(transformers.TrainerCallback):
    """The model's parameters at on_train_begin, where this callback stands in the list."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.states.append({k: v.detach().clone() for k, v in model.named_parameters()})


def test_the_callback_shrinks_gpt2s_conv1d_layers_by_columns_and_leaves_the_tied_embedding(tmp_path):
    model = _gpt2()
    assert model.lm_head.weight is model.transformer.wte.weight  # tied, as in every GPT-2
    opt = DASHWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3), model=model)
    before, after, callback = Snapshot(), Snapshot(), DASHCallback()
    old = _texts(16, 0)
    trainer = transformers.Trainer(model=model, args=_args(tmp_path), train_dataset=old, optimizers=(opt, None),
                                   callbacks=[before, callback, after])
    trainer.train()
    trainer.train_dataset = old + _texts(8, 1)
    trainer.train()

    [report] = callback.reports
    assert sorted(p.name for p in report.params) == sorted(CONV1D)
    assert "tied" in report.skipped["transformer.wte.weight"]
    old_state, new_state = before.states[-1], after.states[-1]
    torch.testing.assert_close(new_state["transformer.wte.weight"], old_state["transformer.wte.weight"],
                               rtol=0, atol=0)
    for name in CONV1D:
        factors = report.factors[name]
        module = model.get_submodule(name.rpartition(".")[0])
        assert type(module).__name__ == "Conv1D"
        torch.testing.assert_close(new_state[name], old_state[name] * factors)
        if name.endswith(".weight"):  # one factor per output feature: a column of the (in, out) weight
            assert factors.numel() == module.nf == module.weight.shape[1]
            ratio = new_state[name] / old_state[name]
            torch.testing.assert_close(ratio, ratio[:1].expand_as(ratio))  # constant down every column
    # The figures in the log history name the Conv1D weights.
    [entry] = [h for h in trainer.state.log_history if "dash/mean_factor" in h]
    assert "dash/mean_factor/transformer.h.1.mlp.c_fc.weight" in entry
    assert not any("wte" in key or "lm_head" in key for key in entry)
