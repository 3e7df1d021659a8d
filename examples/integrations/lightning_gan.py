"""DASH under Lightning's manual optimization, with two optimizers (a GAN-style step).

Needs the ``lightning`` extra. ``training_step`` steps both optimizers, so it cannot be the
loss of DASH's gradient pass: the wrapped generator gets a ``batch_loss`` that only computes
its loss. During the pass the discriminator's optimizer refuses to step.
"""

import lightning.pytorch as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from torch_dash_optim import DASHWrapper
from torch_dash_optim.integrations.lightning import DASHCallback

bce = nn.functional.binary_cross_entropy_with_logits


class Gan(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.gen = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 4))
        self.disc = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))

    def generator_loss(self, noise):
        score = self.disc(self.gen(noise))
        return bce(score, torch.ones_like(score))

    def training_step(self, batch, batch_idx):
        real, noise = batch
        opt_g, opt_d = self.optimizers()
        real_score, fake_score = self.disc(real), self.disc(self.gen(noise).detach())
        d_loss = bce(real_score, torch.ones_like(real_score)) + bce(fake_score, torch.zeros_like(fake_score))
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()
        opt_g.zero_grad()
        self.manual_backward(self.generator_loss(noise))
        opt_g.step()

    def configure_optimizers(self):
        gen = DASHWrapper(
            torch.optim.Adam(self.gen.parameters(), lr=1e-3),
            model=self.gen,
            batch_loss=lambda model, batch: self.generator_loss(batch[1]),
        )
        return gen, torch.optim.Adam(self.disc.parameters(), lr=1e-3)


torch.manual_seed(0)
data = TensorDataset(torch.randn(64, 4) + 2, torch.randn(64, 4))  # real samples, generator noise
callback = DASHCallback()
callback.request()  # shrink the generator at the first epoch start (on growth, it does so by itself)
trainer = L.Trainer(
    max_epochs=1,
    callbacks=[callback],
    accelerator="cpu",
    logger=False,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
)
trainer.fit(Gan(), DataLoader(data, batch_size=16))
[report] = callback.reports
print(f"generator shrunk over {report.num_batches} batches, mean factor {report.mean_factor:.3f}")
