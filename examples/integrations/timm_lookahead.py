"""DASH with a timm model and a timm optimizer (``create_optimizer_v2``), Lookahead included.

Needs the ``timm`` extra. Run: ``python examples/integrations/timm_lookahead.py``.
A tiny ResNet is built without pretrained weights, so nothing is downloaded.
"""

import timm
import torch
from timm.optim import create_optimizer_v2
from torch import nn

from torch_dash_optim import DASHWrapper

torch.manual_seed(0)
model = timm.create_model("resnet10t", pretrained=False, num_classes=3)

# "lookahead_" before the name wraps the optimizer in timm's Lookahead.
base = create_optimizer_v2(model, opt="lookahead_adamw", lr=1e-3, weight_decay=0.05)
opt = DASHWrapper(base, model=model, loss_fn=nn.CrossEntropyLoss())


def batches(n: int) -> list:
    return [(torch.randn(4, 3, 32, 32), torch.randint(0, 3, (4,))) for _ in range(n)]


old = batches(2)
for x, y in old:
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()

# New data last. Lookahead's slow weights are shrunk with the weights; the moments of its
# inner AdamW follow the wrapper's state= policy.
report = opt.on_new_data(old + batches(1))
print(type(base).__name__, report.num_batches, f"{report.mean_factor:.3f}")
