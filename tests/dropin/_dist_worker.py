"""Worker of the distributed tests: runs every DDP/FSDP2 case on one rank and saves the results.

Started by ``test_distributed.py`` as 2 processes (gloo, CPU). Each case records tensors and
counters; the parent process compares the ranks with each other and with a single-process
reference that sees the union of the ranks' batches.
"""

from __future__ import annotations

import copy
import gc
import traceback
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from torch_dash_optim import DASHWrapper

PER_RANK_BATCH = 6


def _mlp(seed: int = 0, head: bool = False) -> nn.Module:
    torch.manual_seed(seed)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
            self.unused = nn.Linear(8, 2) if head else None

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)

    return Net()


def _dataset(n: int = 48) -> TensorDataset:
    g = torch.Generator().manual_seed(5)
    return TensorDataset(torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g))


def _global_batches(
    ds: TensorDataset, world: int, num_batches: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batch i of the reference: the union of every rank's batch i (DistributedSampler order)."""
    out = []
    for i in range(num_batches):
        idx = [r + world * (PER_RANK_BATCH * i + j) for r in range(world) for j in range(PER_RANK_BATCH)]
        x, y = ds[torch.tensor(idx)]
        out.append((x, y))
    return out


def _loader(ds: TensorDataset, rank: int, world: int, limit: int | None = None) -> Any:
    sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=False)
    loader = DataLoader(ds, batch_size=PER_RANK_BATCH, sampler=sampler)
    if limit is None:
        return loader
    return [b for i, b in enumerate(loader) if i < limit]


class _Counter:
    """Counts Python-level all_reduce calls (the gathered direction's reduction)."""

    def __init__(self) -> None:
        self.n = 0
        self.real: Callable[..., Any] = dist.all_reduce

    def __enter__(self) -> _Counter:
        def counting(*args: Any, **kwargs: Any) -> Any:
            self.n += 1
            return self.real(*args, **kwargs)

        dist.all_reduce = counting
        return self

    def __exit__(self, *exc: Any) -> None:
        dist.all_reduce = self.real


def _reference(model: nn.Module, batches: list[Any], **kwargs: Any) -> dict[str, torch.Tensor]:
    ref = copy.deepcopy(model)
    opt = DASHWrapper(
        torch.optim.SGD(ref.parameters(), lr=0.1),
        model=ref,
        loss_fn=nn.CrossEntropyLoss(),
        sync=False,
        **kwargs,
    )
    opt.on_new_data(batches)
    return {n: p.detach().clone() for n, p in ref.named_parameters()}


def case_ddp(rank: int, world: int, bucket_view: bool = False) -> dict[str, Any]:
    from torch.nn.parallel import DistributedDataParallel as DDP

    ds = _dataset()
    inner = _mlp()
    ddp = DDP(inner, gradient_as_bucket_view=bucket_view)
    hook_calls = {"n": 0}

    def hook(state, bucket):  # type: ignore[no-untyped-def]  # DDP checks real (unquoted) annotations
        hook_calls["n"] += 1
        fut = dist.all_reduce(bucket.buffer().div_(world), async_op=True).get_future()
        return fut.then(lambda f: f.value()[0])

    hook.__annotations__ = {"bucket": dist.GradBucket, "return": torch.futures.Future[torch.Tensor]}

    ddp.register_comm_hook(None, hook)
    opt = DASHWrapper(
        torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9),
        model=ddp,
        loss_fn=nn.CrossEntropyLoss(),
        lambd=0.0,
    )
    loader = _loader(ds, rank, world)
    for x, y in loader:  # ordinary DDP training: one gradient all-reduce per batch
        opt.zero_grad()
        nn.functional.cross_entropy(ddp(x), y).backward()
        opt.step()
    train_hooks = hook_calls["n"]
    ddp.eval()
    ddp.module.body[0].train()  # odd modes, to check they come back
    reference = _reference(inner, _global_batches(ds, world, len(loader)), lambd=0.0)
    hook_calls["n"] = 0
    with _Counter() as c4:
        report = opt.on_new_data(loader)
    hooks_in_dash = hook_calls["n"]
    # Fewer batches: the number of all-reduce calls must not depend on the number of batches.
    snap = copy.deepcopy(inner.state_dict())
    with _Counter() as c2:
        opt.on_new_data(_loader(ds, rank, world, limit=2))
    inner.load_state_dict(snap)
    params = {n: p.detach().clone() for n, p in inner.named_parameters()}
    modes = [ddp.training, inner.training, inner.body[0].training]
    ddp.train()
    hook_calls["n"] = 0
    for x, y in loader:  # training goes on after DASH, gradients all-reduced again
        opt.zero_grad()
        nn.functional.cross_entropy(ddp(x), y).backward()
        opt.step()
    return {
        "params": params,
        "trained": {n: p.detach().clone() for n, p in inner.named_parameters()},
        "hooks_after_dash": hook_calls["n"],
        "reference": reference,
        "train_hooks": train_hooks,
        "hooks_in_dash": hooks_in_dash,
        "all_reduce_4_batches": c4.n,
        "all_reduce_2_batches": c2.n,
        "num_targets": len(report.params),
        "num_batches": report.num_batches,
        "modes": modes,
    }


def case_plain(rank: int, world: int) -> dict[str, Any]:
    ds = _dataset()
    model = _mlp(head=True)
    opt = DASHWrapper(
        torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss(), lambd=0.0
    )
    loader = _loader(ds, rank, world)
    reference = _reference(model, _global_batches(ds, world, len(loader)), lambd=0.0)
    report = opt.on_new_data(loader)
    return {
        "params": {n: p.detach().clone() for n, p in model.named_parameters()},
        "reference": reference,
        "skipped": report.skipped,
    }


def case_fsdp(rank: int, world: int, granularity: str, state: str) -> dict[str, Any]:
    from torch.distributed.fsdp import fully_shard

    ds = _dataset()
    model = _mlp()
    full = copy.deepcopy(model)
    for layer in (model.body[0], model.body[2]):
        fully_shard(layer)
    fully_shard(model)
    opt = DASHWrapper(
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
        model=model,
        loss_fn=nn.CrossEntropyLoss(),
        lambd=0.0,
        granularity=granularity,
        state=state,
    )
    full_opt = DASHWrapper(
        torch.optim.SGD(full.parameters(), lr=0.1, momentum=0.9),
        model=full,
        loss_fn=nn.CrossEntropyLoss(),
        lambd=0.0,
        granularity=granularity,
        state=state,
        sync=False,
    )
    loader = _loader(ds, rank, world)
    batches = _global_batches(ds, world, len(loader))
    for (x, y), (gx, gy) in zip(loader, batches, strict=True):  # a few steps: momentum exists
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        full_opt.zero_grad()
        nn.functional.cross_entropy(full(gx), gy).backward()
        full_opt.step()
    before = {n: p.full_tensor().clone() for n, p in model.named_parameters()}
    report = opt.on_new_data(loader)
    full_opt.on_new_data(batches)
    return {
        "before": before,
        "params": {n: p.full_tensor().clone() for n, p in model.named_parameters()},
        "reference": {n: p.detach().clone() for n, p in full.named_parameters()},
        "momentum": [s["momentum_buffer"].full_tensor().clone() for s in opt.state.values()],
        "ref_momentum": [s["momentum_buffer"].clone() for s in full_opt.state.values()],
        "names": [p.name for p in report.params],
    }


CASES: dict[str, Callable[[int, int], dict[str, Any]]] = {
    "ddp": case_ddp,
    "ddp_bucket_view": lambda r, w: case_ddp(r, w, bucket_view=True),
    "plain": case_plain,
    "fsdp_kernel": lambda r, w: case_fsdp(r, w, "kernel", "scale"),
    "fsdp_tensor": lambda r, w: case_fsdp(r, w, "tensor", "keep"),
}


def main(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    results: dict[str, Any] = {}
    try:
        for name, case in CASES.items():
            try:
                results[name] = case(rank, world)
            except Exception:
                results[name] = {"error": traceback.format_exc()}
            dist.barrier()
    finally:
        torch.save(results, f"{out_dir}/rank{rank}.pt")
        gc.collect()  # free DDP/FSDP state and its gloo work before the group goes (see docs)
        dist.destroy_process_group()
