"""The Hugging Face Trainer with DASHCallback, and Accelerate through on_new_data/find_dash."""

from __future__ import annotations

import pytest
import torch

from ._common import need

transformers = need("transformers")
accelerate = need("accelerate")
from torch_dash_optim import DASHWrapper, find_dash, on_new_data  # noqa: E402
from torch_dash_optim.integrations.transformers import DASHCallback, model_loss  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    yield
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def _tiny_bert():
    config = transformers.BertConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=16, num_labels=3,
    )
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config)


def _examples(n: int, seed: int) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 40, (n, 8), generator=g)
    labels = torch.randint(0, 3, (n,), generator=g)
    return [{"input_ids": i, "attention_mask": torch.ones(8, dtype=torch.long), "labels": int(y)}
            for i, y in zip(ids, labels)]


def test_trainer_callback_shrinks_when_the_training_data_grows(tmp_path):
    model = _tiny_bert()
    opt = DASHWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3), model=model, lambd=0.2)
    callback = DASHCallback()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=8, num_train_epochs=1, report_to=[],
        save_strategy="no", logging_strategy="no", lr_scheduler_type="constant", use_cpu=True,
        disable_tqdm=True, dataloader_num_workers=0,
    )
    old = _examples(16, 0)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=old, optimizers=(opt, None),
                                   callbacks=[callback])
    trainer.train()
    assert callback.reports == [] and callback.seen == 16 and opt.num_dash_calls == 0

    trainer.train_dataset = old + _examples(8, 1)  # new data last
    trainer.train()
    [report] = callback.reports
    assert report.call == 1 and opt.num_dash_calls == 1 and report.num_batches == 3
    assert "bert.encoder.layer.0.attention.self.query.weight" in report.factors
    assert 0.2 <= report.mean_factor < 1
    assert find_dash(trainer.optimizer) is opt  # the Trainer's AcceleratedOptimizer
    assert trainer.optimizer.state_dict()["dash"]["calls"] == 1
    restored = DASHCallback(**callback.state()["args"])
    assert restored.seen == 24


def test_model_loss_names_the_missing_labels():
    model = _tiny_bert()
    batch = {"input_ids": torch.randint(1, 40, (2, 8))}
    with pytest.raises(ValueError, match=r"no loss for a batch with \['input_ids'\]"):
        model_loss(model, batch)


def test_accelerated_optimizer_reaches_the_wrapper_and_honours_bf16():
    accelerator = accelerate.Accelerator(cpu=True, mixed_precision="bf16")
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    seen: list = []

    def loss(out, y):
        # accelerate casts outputs to fp32: look at the autocast state itself
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return torch.nn.functional.cross_entropy(out.float(), y)

    wrapper = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), model=model, loss_fn=loss)
    data = torch.utils.data.TensorDataset(torch.randn(32, 4), torch.randint(0, 3, (32,)))
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    model, opt, train_loader = accelerator.prepare(model, wrapper, loader)
    assert type(opt).__name__ == "AcceleratedOptimizer"
    with pytest.raises(AttributeError):
        opt.on_new_data(loader)  # why the module-level function exists
    for x, y in train_loader:
        opt.zero_grad()
        accelerator.backward(torch.nn.functional.cross_entropy(model(x), y))
        opt.step()
    with accelerator.autocast():
        report = on_new_data(opt, loader)
    assert report.call == 1 and wrapper.num_dash_calls == 1 and find_dash(opt) is wrapper
    assert seen and all(enabled and dtype == torch.bfloat16 for enabled, dtype in seen)
    assert opt.state_dict()["dash"]["calls"] == 1
