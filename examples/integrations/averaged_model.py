"""Keep an EMA and an SWA average in step with the shrunk model: ``report.apply_to``.

Run: ``python examples/integrations/averaged_model.py`` (torch only).
"""

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from torch_dash_optim import DASHWrapper

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
loss_fn = nn.CrossEntropyLoss()
opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), model=model, loss_fn=loss_fn)
ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.99))  # tracks the live model
swa = AveragedModel(model)  # an average over the training of one stage


def train(data) -> None:
    for x, y in data:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
        ema.update_parameters(model)
        swa.update_parameters(model)


old = [(torch.randn(16, 8), torch.randint(0, 3, (16,))) for _ in range(8)]
train(old)

seen = old + [(torch.randn(16, 8), torch.randint(0, 3, (16,))) for _ in range(4)]  # new data last
report = opt.on_new_data(seen)
report.apply_to(ema)  # the EMA gets the same factors (the "module." prefix is handled)
swa.n_averaged.zero_()  # SWA restarts: the next update copies the shrunk model
train(seen)

# The EMA's weights were shrunk with the model's, so it stayed close to it.
gap = max((a - b).abs().max().item() for a, b in zip(ema.module.parameters(), model.parameters()))
print(f"largest EMA - model gap after the stage: {gap:.4f}")
