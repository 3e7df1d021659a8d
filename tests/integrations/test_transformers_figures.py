"""The Hugging Face DASHCallback's figures go through the Trainer's own log(): they are in
state.log_history and reach every callback's on_log (the report_to backends among them)."""

from __future__ import annotations

import json

import pytest
import torch

from ._common import need

transformers = need("transformers")
need("accelerate")
from torch_dash_optim import DASHWrapper  # noqa: E402
from torch_dash_optim.integrations import transformers as hf_integration  # noqa: E402
from torch_dash_optim.integrations.transformers import DASHCallback, model_loss  # noqa: E402

from .test_transformers import _examples, _fresh_accelerate_state, _tiny_bert  # noqa: E402, F401
from .test_transformers_stages import _args  # noqa: E402


class Backend(transformers.TrainerCallback):
    """Stands for a report_to backend: the Trainer puts those before the user's callbacks."""

    def __init__(self) -> None:
        self.logs: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs))


def _grown(tmp_path, callback: DASHCallback, **kwargs):
    """Train on 16 examples, then on 24 (new data last); return the trainer, the backend and the model."""
    model = _tiny_bert()
    opt = DASHWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3), model=model, lambd=0.2)
    backend = Backend()
    old = _examples(16, 0)
    trainer = transformers.Trainer(model=model, args=_args(tmp_path, **kwargs), train_dataset=old,
                                   optimizers=(opt, None), callbacks=[backend, callback])
    trainer.train()
    trainer.train_dataset = old + _examples(8, 1)
    trainer.train()
    return trainer, backend, model


def test_the_figures_enter_the_log_history_and_every_on_log(tmp_path):
    callback = DASHCallback()
    trainer, backend, _ = _grown(tmp_path, callback)
    [report] = callback.reports
    [entry] = [h for h in trainer.state.log_history if "dash/mean_factor" in h]
    expected = {"dash/mean_factor": report.mean_factor, "dash/at_floor": report.at_floor,
                "dash/min_factor": min(p.min for p in report.params)}
    for p in report.params:
        expected |= {f"dash/mean_factor/{p.name}": p.mean, f"dash/min_factor/{p.name}": p.min,
                     f"dash/at_floor/{p.name}": p.at_floor}
    assert {k: v for k, v in entry.items() if k.startswith("dash/")} == expected
    assert entry["step"] == 0 and "epoch" in entry  # logged before the first step of the second train()
    assert "dash/mean_factor/bert.encoder.layer.0.attention.self.query.weight" in entry
    [received] = [logs for logs in backend.logs if "dash/mean_factor" in logs]
    assert {k: v for k, v in received.items() if k.startswith("dash/")} == expected
    assert callback.metrics == expected


def test_diagnostics_are_logged_with_the_factors(tmp_path):
    callback = DASHCallback(log_factors="summary", diagnostics={"when": "both", "max_batches": 2})
    trainer, backend, _ = _grown(tmp_path, callback)
    [entry] = [h for h in trainer.state.log_history if "dash/mean_factor" in h]
    assert sorted(k for k in entry if k.startswith("dash/")) == ["dash/at_floor", "dash/mean_factor",
                                                                 "dash/min_factor"]
    assert entry["diag/num_batches"] == entry["diag_after/num_batches"] == 2
    assert "diag/dormant/bert.encoder.layer.0.output.dense" in entry  # reads the GELU'd intermediate units
    assert entry["diag_after/norm"] < entry["diag/norm"]  # measured on the shrunk model
    assert "diag/feature_rank" in entry and any("diag/feature_rank" in logs for logs in backend.logs)


def test_run_outside_a_trainer_warns_and_keeps_the_figures():
    model = _tiny_bert()
    opt = DASHWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3), model=model, batch_loss=model_loss)
    callback = DASHCallback()
    args = transformers.TrainingArguments(output_dir="unused", per_device_train_batch_size=8, use_cpu=True,
                                          report_to=[])
    batches = [{"input_ids": torch.randint(1, 40, (4, 8)), "labels": torch.randint(0, 3, (4,))}]
    with pytest.warns(UserWarning, match=r"found no Trainer to log its figures through.*callback\.metrics"):
        report = callback.run(args, opt, None, batches)
    assert callback.metrics["dash/mean_factor"] == report.mean_factor


def test_include_and_exclude_reach_on_new_data_only_when_set(tmp_path, monkeypatch):
    seen: list[dict] = []
    original = DASHWrapper.on_new_data

    def spy(self, loader, **kwargs):
        seen.append(kwargs)
        kwargs = {k: v for k, v in kwargs.items() if k not in ("include", "exclude")}
        return original(self, loader, **kwargs)

    monkeypatch.setattr(DASHWrapper, "on_new_data", spy)
    _grown(tmp_path / "a", DASHCallback())
    _grown(tmp_path / "b", DASHCallback(exclude="bert.embeddings.*"))
    assert [sorted(k for k in kw if k in ("include", "exclude")) for kw in seen] == [[], ["exclude"]]


def test_include_and_exclude_choose_the_parameters_shrunk(tmp_path):
    callback = DASHCallback(include=["bert.encoder.*"], exclude=["*.bias", "*.attention.*"])
    _grown(tmp_path, callback)
    [report] = callback.reports
    assert sorted(p.name for p in report.params) == [
        "bert.encoder.layer.0.intermediate.dense.weight", "bert.encoder.layer.0.output.dense.weight"]


class Augmented(torch.utils.data.Dataset):
    """A torch dataset with a torchvision-style ``transform`` over tokenised examples."""

    def __init__(self, examples: list[dict], transform) -> None:
        self.examples, self.transform = examples, transform

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict:
        return self.transform(dict(self.examples[i]))


def _mask_first(example: dict) -> dict:  # a deterministic "augmentation": the first token masked
    ids = example["input_ids"].clone()
    ids[0] = 0
    return {**example, "input_ids": ids}


def test_pass_transform_reads_the_training_data_without_augmentation(tmp_path):
    seen: list[torch.Tensor] = []

    def batch_loss(model, batch):
        seen.append(batch["input_ids"].clone())
        return model_loss(model, batch)

    model = _tiny_bert()
    opt = DASHWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3), model=model)
    callback = DASHCallback(batch_loss=batch_loss, pass_transform=lambda example: example)
    examples = _examples(16, 0) + _examples(8, 1)
    trainer = transformers.Trainer(model=model, args=_args(tmp_path), train_dataset=Augmented(examples[:16],
                                   _mask_first), optimizers=(opt, None), callbacks=[callback])
    trainer.train()
    grown = Augmented(examples, _mask_first)
    trainer.train_dataset = grown
    trainer.train()
    assert len(callback.reports) == 1
    torch.testing.assert_close(torch.cat(seen), torch.stack([e["input_ids"] for e in examples]))
    assert grown.transform is _mask_first and trainer.train_dataset is grown


def test_the_state_is_json_and_a_rebuild_without_the_original_refuses_to_run_without_its_callables():
    callback = DASHCallback(pass_transform=lambda e: e, exclude=("lm_head.*",), diagnostics={"tau": 0.1},
                            log_factors="summary")
    state = json.loads(json.dumps(callback.state()))
    assert state["args"]["exclude"] == ["lm_head.*"] and state["args"]["unsaved"] == ["pass_transform"]
    assert state["args"]["diagnostics"] == {"tau": 0.1} and state["args"]["log_factors"] == "summary"
    hf_integration._exports.last = None  # a new process: the original callback cannot be found
    rebuilt = DASHCallback(**state["args"])
    assert rebuilt is not callback and rebuilt.exclude == ["lm_head.*"] and rebuilt.log_factors == "summary"
    with pytest.raises(ValueError, match=r"without the pass_transform given to the original callback"):
        rebuilt.on_train_begin(None, None, None)
