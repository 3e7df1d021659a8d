"""DASH in PyTorch Lightning: DASHCallback shrinks when the training set grows.

Needs the ``lightning`` extra. Run: ``python examples/integrations/lightning_callback.py``.

The datamodule appends a new chunk of data after every two epochs; with
``reload_dataloaders_every_n_epochs=1`` Lightning re-reads the training loader, and the
callback sees the dataset grow and calls DASH before the next epoch trains on it.
"""

import lightning.pytorch as L
import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, TensorDataset

from torch_dash_optim import DASHWrapper
from torch_dash_optim.integrations.lightning import DASHCallback


class GrowingData(L.LightningDataModule):
    """All the data so far: one more chunk of 64 examples every two epochs, new data last."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks = []

    def train_dataloader(self) -> DataLoader:
        epoch = self.trainer.current_epoch if self.trainer else 0
        while len(self.chunks) <= epoch // 2:
            self.chunks.append(TensorDataset(torch.randn(64, 8), torch.randint(0, 3, (64,))))
        return DataLoader(ConcatDataset(self.chunks), batch_size=16, shuffle=True)


class Net(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
        self.loss_fn = nn.CrossEntropyLoss()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.loss_fn(self(x), y)

    def configure_optimizers(self):
        sgd = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)
        return DASHWrapper(sgd, model=self, loss_fn=self.loss_fn)


torch.manual_seed(0)
callback = DASHCallback(batch_size="chunk")  # the pass: one batch per chunk of new data
trainer = L.Trainer(
    max_epochs=6,
    callbacks=[callback],
    reload_dataloaders_every_n_epochs=1,  # re-read the growing training set every epoch
    accelerator="cpu",
    logger=False,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
)
trainer.fit(Net(), datamodule=GrowingData())

for report in callback.reports:  # one report per growth: 64 -> 128 -> 192 examples
    print(f"call {report.call}: {report.num_batches} batches, mean factor {report.mean_factor:.3f}")
assert len(callback.reports) == 2
