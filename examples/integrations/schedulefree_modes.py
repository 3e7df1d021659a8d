"""DASH with a schedule-free optimizer, which has its own train and eval modes.

Needs the ``schedulefree`` extra. Run: ``python examples/integrations/schedulefree_modes.py``.
"""

import schedulefree
import torch
from torch import nn

from torch_dash_optim import DASHWrapper

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
loss_fn = nn.CrossEntropyLoss()
opt = DASHWrapper(schedulefree.AdamWScheduleFree(model.parameters(), lr=1e-2), model=model, loss_fn=loss_fn)


def batches(n: int) -> list:
    return [(torch.randn(16, 8), torch.randint(0, 3, (16,))) for _ in range(n)]


def train(data) -> None:
    model.train()
    opt.train()  # schedule-free: before every training phase (the wrapper forwards it)
    for x, y in data:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()


def evaluate(data) -> float:
    model.eval()
    opt.eval()  # schedule-free: evaluate at the averaged weights
    with torch.no_grad():
        return sum(loss_fn(model(x), y).item() for x, y in data) / len(data)


old = batches(4)
train(old)
print(f"loss after the first stage: {evaluate(old):.3f}")

seen = old + batches(2)  # new data last
# The optimizer is in eval mode here: on_new_data switches it to train mode for the call (the
# shrink applies to the training point and the z sequence), then back to eval mode.
report = opt.on_new_data(seen)
train(seen)
print(f"loss after the second stage: {evaluate(seen):.3f}; mean factor {report.mean_factor:.3f}")
