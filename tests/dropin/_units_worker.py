"""One rank of tests/dropin/test_distributed_units.py: nn.MultiheadAttention under FSDP2 (gloo, CPU)."""

from __future__ import annotations

import copy
import sys
import traceback
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from torch_dash_optim import DASHWrapper
from torch_dash_optim.distributed import is_dtensor

E = 8


class Attend(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(E, 2, batch_first=True)
        self.head = nn.Linear(E, 3)
        with torch.no_grad():
            self.attn.in_proj_bias.normal_()
            self.attn.out_proj.bias.normal_()

    def forward(self, x):
        return self.head(self.attn(x, x, x, need_weights=False)[0].mean(1))


def main(rank: int, world: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    try:
        from torch.distributed.fsdp import fully_shard

        torch.manual_seed(0)
        model = Attend()
        full = copy.deepcopy(model)
        g = torch.Generator().manual_seed(1)
        data = [(torch.randn(4, 5, E, generator=g), torch.randint(0, 3, (4,), generator=g)) for _ in range(2)]
        results = {}
        for granularity in ("kernel", "tensor"):
            sharded = copy.deepcopy(model)
            fully_shard(sharded.attn)
            fully_shard(sharded)
            kw = dict(loss_fn=nn.CrossEntropyLoss(), lambd=0.0, granularity=granularity)
            report = DASHWrapper(torch.optim.SGD(sharded.parameters(), lr=0.1), model=sharded, **kw).on_new_data(data)
            plain = copy.deepcopy(full)
            reference = DASHWrapper(torch.optim.SGD(plain.parameters(), lr=0.1), model=plain, sync=False, **kw)
            ref = reference.on_new_data(data)
            results[granularity] = {
                "local": dict(report.factors),
                "reference": dict(ref.factors),
                "units": {p.name: p.units for p in ref.params},
                "sharded": is_dtensor(sharded.attn.in_proj_bias),
            }
        torch.save({"rank": rank, **results}, Path(out) / f"rank{rank}.pt")
    except BaseException:
        torch.save({"rank": rank, "error": traceback.format_exc()}, Path(out) / f"rank{rank}.pt")
        sys.exit(1)
    finally:
        dist.destroy_process_group()
