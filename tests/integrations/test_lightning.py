"""DASHCallback with the real Lightning: fit, grow the data, continue, save, resume; bf16-mixed."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, TensorDataset

from ._common import need

L = need("lightning.pytorch")
from torch_dash_optim import DASHWrapper  # noqa: E402
from torch_dash_optim.integrations.lightning import DASHCallback  # noqa: E402


class Growing(L.LightningDataModule):
    """A datamodule whose training set grows by appending chunks."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks = [self._chunk(0, 32)]

    @staticmethod
    def _chunk(seed: int, n: int) -> TensorDataset:
        g = torch.Generator().manual_seed(seed)
        return TensorDataset(torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g))

    def grow(self, n: int = 16) -> None:
        self.chunks.append(self._chunk(len(self.chunks), n))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(ConcatDataset(self.chunks), batch_size=16, shuffle=True)


class Net(L.LightningModule):
    def __init__(self, record: list | None = None) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        self.record = record

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        def batch_loss(model, batch):
            x, y = batch
            out = model(x)
            if self.record is not None:
                self.record.append((x, torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"), out.dtype))
            return nn.functional.cross_entropy(out, y)

        opt = DASHWrapper(torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9), model=self,
                          batch_loss=batch_loss, lambd=0.1)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, step_size=1)}


def _trainer(tmp_path, max_epochs: int, callback: DASHCallback, **kwargs) -> L.Trainer:
    return L.Trainer(
        max_epochs=max_epochs, callbacks=[callback], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        accelerator="cpu", devices=1, num_sanity_val_steps=0, **kwargs,
    )


def test_callback_shrinks_when_the_data_grows_and_resumes_from_a_checkpoint(tmp_path):
    record: list = []
    dm, model, callback = Growing(), Net(record), DASHCallback()
    trainer = _trainer(tmp_path, 1, callback)
    trainer.fit(model, dm)
    assert callback.reports == [] and record == [] and callback.state_dict() == {"seen": 32}

    dm.grow()
    before = [p.detach().clone() for p in model.parameters()]
    trainer.fit_loop.max_epochs = 2
    trainer.fit(model, dm)  # continue training on the grown data
    assert len(callback.reports) == 1 and callback.reports[0].call == 1
    wrapper = trainer.optimizers[0]
    assert isinstance(wrapper, DASHWrapper) and wrapper.num_dash_calls == 1
    # The pass saw every example once, in the dataset's order, new data last (shuffle=False).
    seen = torch.cat([x for x, *_ in record])
    torch.testing.assert_close(seen, torch.cat([c.tensors[0] for c in dm.chunks]))
    assert 0.1 <= callback.reports[0].mean_factor < 1
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert trainer.callback_metrics["dash/mean_factor"] == callback.reports[0].mean_factor

    path = tmp_path / "grown.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=False)
    assert ckpt["optimizer_states"][0]["dash"]["calls"] == 1
    assert {"seen": 48} in ckpt["callbacks"].values()

    # Resume with the same data: no new call, the count comes back from the checkpoint.
    callback2 = DASHCallback()
    trainer2 = _trainer(tmp_path, 3, callback2)
    model2 = Net()
    trainer2.fit(model2, dm, ckpt_path=path)
    assert callback2.reports == [] and trainer2.optimizers[0].num_dash_calls == 1

    # Resume after the data grew again: the second call is counted on top of the restored one.
    dm.grow()
    callback3 = DASHCallback()
    trainer3 = _trainer(tmp_path, 3, callback3)
    trainer3.fit(Net(), dm, ckpt_path=path)
    assert [r.call for r in callback3.reports] == [2] and trainer3.optimizers[0].num_dash_calls == 2


def test_callback_honours_bf16_mixed_precision_and_can_use_training_step(tmp_path):
    record: list = []
    dm, model = Growing(), Net(record)
    callback = DASHCallback()
    callback.request()  # at the first epoch start, without waiting for the data to grow
    trainer = _trainer(tmp_path, 1, callback, precision="bf16-mixed", limit_train_batches=1)
    trainer.fit(model, dm)
    assert [r.call for r in callback.reports] == [1]
    assert record and all(enabled and dtype == torch.bfloat16 and out == torch.bfloat16
                          for _, enabled, dtype, out in record)

    # A wrapper without a loss: the module's training_step gives it; its self.log calls are dropped.
    class NoLoss(Net):
        def configure_optimizers(self):
            return DASHWrapper(torch.optim.SGD(self.parameters(), lr=0.1), model=self)

    callback = DASHCallback(log_factors=False)
    callback.request()
    trainer = _trainer(tmp_path, 1, callback, limit_train_batches=2)
    trainer.fit(NoLoss(), dm)
    assert [r.num_batches for r in callback.reports] == [2]  # 32 examples, batches of 16
    assert "dash/mean_factor" not in trainer.callback_metrics
