"""DASH in the Hugging Face Trainer: DASHCallback shrinks at a train() on grown data.

Needs the ``hf`` extra (transformers and accelerate). Run:
``python examples/integrations/hf_trainer.py``. A tiny BERT is built from a config, so nothing
is downloaded; use ``AutoModelForSequenceClassification.from_pretrained(...)`` for a real one.
"""

import tempfile

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from torch_dash_optim import DASHWrapper
from torch_dash_optim.integrations.transformers import DASHCallback, model_loss


def examples(n: int) -> list[dict]:
    """n tokenised examples with their labels (the model computes its own loss from them)."""
    ids = torch.randint(1, 100, (n, 12))
    labels = torch.randint(0, 2, (n,))
    return [
        {"input_ids": i, "attention_mask": torch.ones(12, dtype=torch.long), "labels": int(y)}
        for i, y in zip(ids, labels)
    ]


torch.manual_seed(0)
config = BertConfig(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=32,
    num_labels=2,
)
model = BertForSequenceClassification(config)

opt = DASHWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3), model=model, batch_loss=model_loss)
callback = DASHCallback()
args = TrainingArguments(
    output_dir=tempfile.mkdtemp(),
    per_device_train_batch_size=16,
    num_train_epochs=1,
    use_cpu=True,
    report_to=[],
    save_strategy="no",
    disable_tqdm=True,
)

old = examples(64)
trainer = Trainer(model=model, args=args, train_dataset=old, optimizers=(opt, None), callbacks=[callback])
trainer.train()  # the first train(): the callback only records the size

trainer.train_dataset = old + examples(32)  # new data arrived: old examples first, new last
trainer.train()  # the callback shrinks before the first step, then trains

[report] = callback.reports
print(f"shrunk {len(report.params)} weights over {report.num_batches} batches, mean factor {report.mean_factor:.3f}")
