"""The Hugging Face DASHCallback: resume keeps the user's loss, a new Trainer per data stage,
and the pass's batch size."""

from __future__ import annotations

import types

import pytest
import torch

from ._common import need

transformers = need("transformers")
need("accelerate")
from torch_dash_optim import DASHWrapper  # noqa: E402
from torch_dash_optim.integrations.transformers import DASHCallback, model_loss  # noqa: E402

from .test_transformers import _examples, _fresh_accelerate_state, _tiny_bert  # noqa: E402, F401


def _args(tmp_path, **kwargs):
    options = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=8, num_train_epochs=1, report_to=[],
        save_strategy="no", logging_strategy="no", lr_scheduler_type="constant", use_cpu=True,
        disable_tqdm=True, dataloader_num_workers=0,
    )
    return transformers.TrainingArguments(**{**options, **kwargs})


def _trainer(tmp_path, model, data, callback, **kwargs):
    opt = DASHWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3), model=model, lambd=0.2)
    return transformers.Trainer(model=model, args=_args(tmp_path, **kwargs), train_dataset=data,
                                optimizers=(opt, None), callbacks=[callback])


@pytest.fixture(scope="module")
def first_stage(tmp_path_factory):
    """A model trained on 16 examples with DASHCallback, and the checkpoint saved at the end."""
    from accelerate.state import AcceleratorState, GradientState

    out = tmp_path_factory.mktemp("first")
    model = _tiny_bert()
    _trainer(out, model, _examples(16, 0), DASHCallback(), save_strategy="epoch").train()
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    assert (out / "checkpoint-2").is_dir()
    return model, out / "checkpoint-2"


def test_resume_with_restored_callback_states_keeps_the_users_batch_loss(tmp_path, first_stage):
    calls: list[int] = []

    def batch_loss(model, batch):
        calls.append(len(batch["labels"]))
        return model_loss(model, batch)

    callback = DASHCallback(batch_loss=batch_loss)
    trainer = _trainer(tmp_path, _tiny_bert(), _examples(16, 0) + _examples(8, 1), callback,
                       restore_callback_states_from_checkpoint=True)
    trainer.train(resume_from_checkpoint=str(first_stage[1]))
    # The Trainer rebuilt the callback from the checkpoint (seen=16): the rebuild is the user's callback.
    assert calls == [8, 8, 8] and [r.num_batches for r in callback.reports] == [3]
    assert callback in trainer.callback_handler.callbacks and callback.seen == 24


def test_a_run_resumed_without_the_callbacks_state_warns(tmp_path, first_stage):
    callback = DASHCallback()
    trainer = _trainer(tmp_path, _tiny_bert(), _examples(16, 0) + _examples(8, 1), callback)
    with pytest.warns(UserWarning, match=r"cannot tell whether the training data grew.*seen=<size trained on>"):
        trainer.train(resume_from_checkpoint=str(first_stage[1]))
    assert callback.reports == []


def test_a_new_trainer_per_data_stage_shrinks_when_the_data_grew(tmp_path, first_stage):
    model = first_stage[0]
    callback = DASHCallback()  # a new Trainer and a new callback, the same model
    _trainer(tmp_path, model, _examples(16, 0) + _examples(8, 1), callback).train()
    assert [r.num_batches for r in callback.reports] == [3]


def test_the_pass_batch_size_defaults_to_the_training_batch_size_and_can_be_set():
    model = _tiny_bert()
    opt = DASHWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3), model=model)
    collate = transformers.default_data_collator
    train_loader = torch.utils.data.DataLoader(_examples(20, 0), batch_size=8, shuffle=True, collate_fn=collate)
    args = types.SimpleNamespace(per_device_train_batch_size=8)  # what run() reads of TrainingArguments

    def batches(**options) -> int:  # 16 old examples, 4 new
        return DASHCallback(**options).run(args, opt, train_loader, grown_by=4).num_batches

    assert batches() == 3  # per_device_train_batch_size
    assert batches(batch_size="chunk") == 5  # one batch per chunk of 4 new examples
    assert batches(batch_size=10) == 2
    assert batches(pass_loader=lambda data: torch.utils.data.DataLoader(data, batch_size=20, collate_fn=collate)) == 1
    with pytest.raises(ValueError, match="batch_size must be a positive int, 'chunk' or None; got 'all'"):
        DASHCallback(batch_size="all")
