"""DASH with FSDP2 (``fully_shard``): two processes on the gloo backend, on a CPU.

Run: ``python examples/integrations/fsdp2.py`` (it starts its two ranks itself). Under torchrun
on GPUs, keep ``main``'s body and use nccl.
"""

import os
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.distributed.fsdp import fully_shard
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from torch_dash_optim import DASHWrapper


def main(rank: int, world: int, init_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)  # the same model and data on every rank
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer)
    fully_shard(model)  # parameters are now DTensor shards, split by rows
    opt = DASHWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3), model=model, loss_fn=nn.CrossEntropyLoss())

    seen = TensorDataset(torch.randn(128, 8), torch.randint(0, 3, (128,)))  # old data, then new
    shard = DistributedSampler(seen, shuffle=False)  # this rank's part, in order
    report = opt.on_new_data(DataLoader(seen, batch_size=32, sampler=shard))

    full = model[0].weight.full_tensor()  # the gathered weights are the same on every rank
    copies = [torch.empty_like(full) for _ in range(world)]
    dist.all_gather(copies, full)
    if rank == 0:
        print(f"{report.num_batches} batches per rank; ranks agree: {torch.equal(copies[0], copies[1])}")
    del opt, model
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        mp.spawn(main, args=(2, os.path.join(folder, "init")), nprocs=2)
