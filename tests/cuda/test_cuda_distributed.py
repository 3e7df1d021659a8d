"""DDP and FSDP2 on one device (a process group of one rank: NCCL on CUDA, gloo on CPU)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import pytest
import torch
import torch.distributed as dist
from _cuda_helpers import batches, cnn, factors_close, mlp, wrapped

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def group() -> Iterator[None]:
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    if dist.is_initialized():
        yield
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    with tempfile.NamedTemporaryFile(delete=False) as f:
        init = f"file://{f.name}"
    dist.init_process_group(backend, init_method=init, rank=0, world_size=1)
    try:
        yield
    finally:
        dist.barrier()
        dist.destroy_process_group()


@pytest.mark.parametrize("sync", [None, True])
def test_ddp_on_one_device_gives_the_plain_factors(group: None, device: torch.device, sync: bool | None) -> None:
    from torch.nn.parallel import DistributedDataParallel as DDP

    data = batches(device)
    plain, inner = cnn(device), cnn(device)
    ddp = DDP(inner, device_ids=[device.index or 0] if device.type == "cuda" else None)
    opt = wrapped(ddp, torch.optim.SGD(ddp.parameters(), lr=0.05), sync=sync)  # sync=True: the all-reduce runs
    ref = wrapped(plain, torch.optim.SGD(plain.parameters(), lr=0.05))
    report, exact = opt.on_new_data(data), ref.on_new_data(data)
    factors_close({n.removeprefix("module."): f for n, f in report.factors.items()}, exact.factors, atol=1e-5)
    for p, q in zip(inner.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert ddp.training


def test_fsdp2_on_one_device_gives_the_plain_weights(group: None, device: torch.device) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    data = batches(device, image=False)
    plain, model = mlp(device), mlp(device)
    mesh = init_device_mesh(device.type, (1,))
    for layer in (model[0], model[2]):
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    opt = wrapped(model, torch.optim.Adam(model.parameters(), lr=1e-3))
    ref = wrapped(plain, torch.optim.Adam(plain.parameters(), lr=1e-3))
    report, exact = opt.on_new_data(data), ref.on_new_data(data)
    assert report.num_batches == exact.num_batches == len(data)
    for p, q in zip(model.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p.full_tensor(), q, rtol=1e-5, atol=1e-6)
