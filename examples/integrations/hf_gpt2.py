"""DASH on a GPT-2 in the Hugging Face Trainer, with its figures in the Trainer's logs.

Needs the ``hf`` extra. Run: ``python examples/integrations/hf_gpt2.py``. A tiny GPT-2 is built
from a config, so nothing is downloaded; use ``GPT2LMHeadModel.from_pretrained("gpt2")`` for a
real one.

GPT-2's attention and MLP projections are transformers ``Conv1D`` layers, whose weight is stored
``(in, out)``: DASH shrinks them by columns, one factor per output feature. The embedding table
is tied to the language-model head; DASH leaves it alone and says why in ``report.skipped``.
The callback logs through the Trainer, so the figures land in ``trainer.state.log_history`` and
in every ``report_to`` backend.
"""

import tempfile

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

from torch_dash_optim import DASHWrapper
from torch_dash_optim.integrations.transformers import DASHCallback


def texts(n: int) -> list[dict]:
    """n random token sequences; the model computes its causal LM loss from ``labels``."""
    return [{"input_ids": ids, "labels": ids} for ids in torch.randint(1, 100, (n, 16))]


torch.manual_seed(0)
config = GPT2Config(vocab_size=100, n_positions=32, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0)
model = GPT2LMHeadModel(config)

opt = DASHWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3), model=model)
callback = DASHCallback(log_factors="summary", diagnostics={"max_batches": 4})
args = TrainingArguments(
    output_dir=tempfile.mkdtemp(),
    per_device_train_batch_size=16,
    num_train_epochs=1,
    use_cpu=True,
    report_to=[],  # e.g. ["tensorboard"] or ["wandb"]: they receive the same figures
    save_strategy="no",
    disable_tqdm=True,
)

old = texts(64)
trainer = Trainer(model=model, args=args, train_dataset=old, optimizers=(opt, None), callbacks=[callback])
trainer.train()
trainer.train_dataset = old + texts(32)  # new text arrived: old examples first, new last
trainer.train()  # the callback shrinks before the first step, then trains

[report] = callback.reports
print(f"shrunk {len(report.params)} tensors: {', '.join(p.name for p in report.params[:4])}, ...")
print(f"left alone: transformer.wte.weight ({report.skipped['transformer.wte.weight']})")
[logged] = [entry for entry in trainer.state.log_history if "dash/mean_factor" in entry]
print(
    f"logged at step {logged['step']}: mean factor {logged['dash/mean_factor']:.3f}, "
    f"at floor {logged['dash/at_floor']:.1%}, feature rank {logged['diag/feature_rank']:.0f}"
)
