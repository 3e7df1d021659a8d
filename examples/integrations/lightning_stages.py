"""DASH in PyTorch Lightning with a new Trainer for each data stage, on the same module.

Needs the ``lightning`` extra. The module keeps the size of the data it was trained on, so each
stage's new DASHCallback shrinks when the data grew; ``batch_size="chunk"`` makes the gradient
pass use one batch per chunk of new data, as in the authors' code.
"""

import lightning.pytorch as L
import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, TensorDataset

from torch_dash_optim import DASHWrapper
from torch_dash_optim.integrations.lightning import DASHCallback


class Net(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        sgd = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)
        return DASHWrapper(sgd, model=self, loss_fn=nn.CrossEntropyLoss())


torch.manual_seed(0)
model, chunks = Net(), []
for stage in range(3):  # a chunk of 64 new examples per stage; all data so far, new data last
    chunks.append(TensorDataset(torch.randn(64, 8), torch.randint(0, 3, (64,))))
    loader = DataLoader(ConcatDataset(chunks), batch_size=16, shuffle=True)
    callback = DASHCallback(batch_size="chunk")
    trainer = L.Trainer(
        max_epochs=2,
        callbacks=[callback],
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, loader)
    for report in callback.reports:
        print(f"stage {stage}: {report.num_batches} batches of 64, mean factor {report.mean_factor:.3f}")
    assert len(callback.reports) == (1 if stage else 0)
