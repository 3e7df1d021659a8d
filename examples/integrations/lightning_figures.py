"""DASHCallback's figures in a Lightning logger, with a gradient pass that skips the augmentation.

Needs the ``lightning`` extra. Run: ``python examples/integrations/lightning_figures.py``.

The training set holds signals read through a random shift and noise (the augmentation), in a
torchvision-style ``transform`` attribute. ``pass_transform`` makes DASH's gradient pass read the
same examples without it, as the authors' code does. Each call's factor statistics and the
plasticity diagnostics of the model before the shrink go to the logger (a ``CSVLogger`` here;
TensorBoard or W&B alike), at the end of the epoch the call started.
"""

import csv
import tempfile
from pathlib import Path

import lightning.pytorch as L
import torch
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from torch_dash_optim import DASHWrapper
from torch_dash_optim.integrations.lightning import DASHCallback


def augment(x: torch.Tensor) -> torch.Tensor:
    """The training augmentation: a random circular shift and a little noise."""
    return torch.roll(x, int(torch.randint(-4, 5, ())), dims=-1) + 0.1 * torch.randn_like(x)


def plain(x: torch.Tensor) -> torch.Tensor:
    """The evaluation transform: the signal as it is."""
    return x


class Signals(Dataset):
    """n one-channel signals of length 32; the label says whether their mean is positive."""

    def __init__(self, n: int, seed: int, transform=augment) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 1, 32, generator=g)
        self.y = (self.x.mean(dim=(1, 2)) > 0).long()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.transform(self.x[i]), self.y[i]


class GrowingData(L.LightningDataModule):
    """All the data so far: one more chunk of 64 signals every two epochs, new data last."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks = []

    def train_dataloader(self) -> DataLoader:
        epoch = self.trainer.current_epoch if self.trainer else 0
        while len(self.chunks) <= epoch // 2:
            self.chunks.append(Signals(64, seed=len(self.chunks)))
        return DataLoader(ConcatDataset(self.chunks), batch_size=16, shuffle=True)


class Net(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv1d(1, 8, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool1d(4))
        self.head = nn.Linear(32, 2)
        self.loss_fn = nn.CrossEntropyLoss()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.loss_fn(self(x), y)

    def configure_optimizers(self):
        sgd = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)
        return DASHWrapper(sgd, model=self, loss_fn=self.loss_fn)


torch.manual_seed(0)
callback = DASHCallback(
    batch_size="chunk",  # the authors' pass: one batch per chunk of data
    pass_transform=plain,  # ... read without the augmentation
    exclude=["head.bias"],  # layers chosen by name: leave the head's bias alone
    diagnostics=True,  # dormant units, ranks and norms of the model before each shrink
)
logs = Path(tempfile.mkdtemp())
trainer = L.Trainer(
    max_epochs=6,
    callbacks=[callback],
    reload_dataloaders_every_n_epochs=1,
    logger=CSVLogger(logs, name="dash"),
    accelerator="cpu",
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
    log_every_n_steps=1,
)
trainer.fit(Net(), datamodule=GrowingData())

with open(trainer.logger.log_dir + "/metrics.csv", newline="") as f:
    rows = [row for row in csv.DictReader(f) if row["dash/mean_factor"]]
for row in rows:  # one row per DASH call, at the end of the epoch it started
    print(
        f"epoch {row['epoch']}: mean factor {float(row['dash/mean_factor']):.3f}, "
        f"head.weight {float(row['dash/mean_factor/head.weight']):.3f}, "
        f"dormant before {float(row['diag/dormant']):.1%}, feature rank {float(row['diag/feature_rank']):.0f}"
    )
assert len(rows) == 2 and "dash/mean_factor/head.bias" not in rows[0]
