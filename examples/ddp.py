"""DASH with DistributedDataParallel, on two processes.

Run it plainly and it starts its two processes itself, on the gloo backend (CPU), as torchrun
would::

    python examples/ddp.py                 # 2 processes, gloo on the CPU
    python examples/ddp.py --tiny          # a smoke-test sized run

or start it under torchrun, with as many processes as you like (nccl on GPUs, gloo on CPUs)::

    torchrun --nproc_per_node=2 examples/ddp.py
    torchrun --nproc_per_node=2 examples/ddp.py --tiny     # the smoke test of tests/repository/test_examples.py

Each rank gathers the DASH direction over its own DistributedSampler shard of the data seen
so far, with no all-reduce per batch (``no_sync``), then the direction is averaged over the
ranks once, so every rank computes the same factors and the replicas stay identical. The
script checks that at the end.
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import ConcatDataset, DataLoader, DistributedSampler, TensorDataset

from torch_dash_optim import DASHWrapper

#: Processes started when the script is run plainly (not under torchrun).
PLAIN_WORLD_SIZE = 2


def make_chunks(num_chunks: int, per_chunk: int, dim: int, seed: int) -> list[TensorDataset]:
    g = torch.Generator().manual_seed(seed)  # the same data on every rank; samplers shard it
    centres = torch.randn(4, dim, generator=g) * 1.5
    chunks = []
    for _ in range(num_chunks):
        y = torch.randint(0, 4, (per_chunk,), generator=g)
        chunks.append(TensorDataset(centres[y] + torch.randn(per_chunk, dim, generator=g), y))
    return chunks


def train(args: argparse.Namespace, device: torch.device) -> None:
    """One rank's run, inside an initialised process group."""
    chunks, epochs, per_chunk, width = (2, 1, 48, 16) if args.tiny else (4, 10, 2000, 256)
    rank, world = dist.get_rank(), dist.get_world_size()
    use_cuda = device.type == "cuda"

    torch.manual_seed(args.seed)  # identical initial weights (DDP also broadcasts rank 0's)
    model = nn.Sequential(nn.Linear(20, width), nn.ReLU(), nn.Linear(width, 4)).to(device)
    ddp = DDP(model, device_ids=[device.index] if use_cuda else None)
    loss_fn = nn.CrossEntropyLoss()
    # Pass the DDP module: on_new_data uses its no_sync(), and syncs the direction once.
    opt = DASHWrapper(torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9), model=ddp, loss_fn=loss_fn)

    parts = make_chunks(chunks, per_chunk, 20, args.seed)
    for k in range(chunks):
        seen = ConcatDataset(parts[: k + 1])
        if k > 0:
            # Every rank passes its own shard, in order (shuffle=False): new data last.
            shard = DistributedSampler(seen, num_replicas=world, rank=rank, shuffle=False)
            report = opt.on_new_data(DataLoader(seen, batch_size=32, sampler=shard))
            if rank == 0:
                print(
                    f"chunk {k}: DASH mean factor {report.mean_factor:.3f}, {report.num_batches} batches here",
                    flush=True,
                )
        sampler = DistributedSampler(seen, num_replicas=world, rank=rank, shuffle=True, seed=args.seed)
        for epoch in range(epochs):
            sampler.set_epoch(epoch)
            ddp.train()
            for x, y in DataLoader(seen, batch_size=32, sampler=sampler):
                opt.zero_grad()
                loss = loss_fn(ddp(x.to(device)), y.to(device))
                loss.backward()
                opt.step()
        if rank == 0:
            print(f"chunk {k}: {len(seen)} samples, last loss {loss.item():.3f}", flush=True)

    # The replicas must be identical: compare every rank's weights with rank 0's.
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    copies = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(copies, flat)
    identical = all(torch.equal(c, copies[0]) for c in copies)
    if rank == 0:
        print(f"replicas identical: {identical}", flush=True)
    # Tear down in order: free DDP's reducer and its pending gloo work (collect the cycles too),
    # wait for every rank, then close the group. Gloo work objects freed during interpreter
    # shutdown can abort the process ("terminate called without an active exception").
    del opt, ddp
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()
    if not identical:
        raise SystemExit("replicas diverged")


def _torchrun(args: argparse.Namespace) -> None:
    """Under torchrun: the group comes from its environment (RANK, WORLD_SIZE, MASTER_ADDR, ...)."""
    use_cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if use_cuda else "gloo")
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    train(args, device)


def _spawned(rank: int, world: int, init_file: str, args: argparse.Namespace) -> None:
    """One of the processes started by a plain run: gloo on the CPU, the group met through a file."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    train(args, torch.device("cpu"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description="DASH with DDP: run plainly (starts 2 gloo processes on the CPU) or under torchrun"
    )
    parser.add_argument("--tiny", action="store_true", help="a smoke-test sized run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if "RANK" in os.environ:  # started by torchrun (or another launcher that sets the environment)
        _torchrun(args)
        return
    print(
        f"starting {PLAIN_WORLD_SIZE} processes on the gloo backend (CPU); for GPUs or another number of "
        "processes, run: torchrun --nproc_per_node=N examples/ddp.py",
        flush=True,
    )
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # two processes share the cores
    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(_spawned, args=(PLAIN_WORLD_SIZE, os.path.join(folder, "init"), args), nprocs=PLAIN_WORLD_SIZE)


if __name__ == "__main__":
    main()
