"""DASH with Hugging Face Accelerate: prepare the wrapper, call on_new_data through it.

Needs the ``hf`` extra. Run: ``python examples/integrations/accelerate_loop.py`` (or with
``accelerate launch`` on several devices).
"""

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, TensorDataset

from torch_dash_optim import DASHWrapper, on_new_data

torch.manual_seed(0)
accelerator = Accelerator(cpu=True, mixed_precision="bf16")  # drop cpu=True on a GPU machine
model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
loss_fn = nn.CrossEntropyLoss()
opt = DASHWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3), model=model, loss_fn=loss_fn)


def chunk() -> TensorDataset:
    return TensorDataset(torch.randn(64, 8), torch.randint(0, 3, (64,)))


def train(model, opt, loader) -> None:
    for x, y in loader:
        opt.zero_grad()
        with accelerator.autocast():
            loss = loss_fn(model(x), y)
        accelerator.backward(loss)
        opt.step()


seen = [chunk()]
model, opt = accelerator.prepare(model, opt)  # opt is now an AcceleratedOptimizer
train(model, opt, accelerator.prepare(DataLoader(ConcatDataset(seen), batch_size=16, shuffle=True)))

seen.append(chunk())  # new data last
# AcceleratedOptimizer does not forward on_new_data: the module-level function finds the
# wrapper inside it. The pass runs under the same autocast as training.
everything = accelerator.prepare(DataLoader(ConcatDataset(seen), batch_size=64, shuffle=False))
with accelerator.autocast():
    report = on_new_data(opt, everything)
train(model, opt, accelerator.prepare(DataLoader(ConcatDataset(seen), batch_size=16, shuffle=True)))
print(report.call, report.num_batches, f"{report.mean_factor:.3f}")
