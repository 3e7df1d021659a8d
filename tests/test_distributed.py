"""The factor functions of torch_dash_optim.distributed, in one process (a gloo group of one rank).

The multi-process DDP and FSDP2 runs are in tests/dropin/test_distributed.py.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import pytest
import torch
import torch.distributed as dist

import torch_dash_optim.functional as F
from torch_dash_optim.distributed import is_dtensor, local_tensor, sharded_dash_factors, sharded_dash_factors_many


def _pairs(seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor], list[tuple[int, ...]], list[float]]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(6, 4, 3, 3), (6,), (5, 7), (5,)]
    weights = [torch.randn(s, generator=g) for s in shapes]
    directions = [torch.randn(s, generator=g) for s in shapes]
    return weights, directions, [F.unit_dims(w.ndim) for w in weights], [0.3, 0.2, 0.5, 0.1]


def test_plain_tensors_get_the_grouped_factors_in_order() -> None:
    weights, directions, dims, lambds = _pairs()
    got = sharded_dash_factors_many(weights, directions, dims, lambds)
    expected = F.dash_factors_many(weights, directions, dims, lambds)
    assert len(got) == len(weights)
    for f, e, w, d, dm, lam in zip(got, expected, weights, directions, dims, lambds, strict=True):
        assert torch.equal(f, e)
        torch.testing.assert_close(f, sharded_dash_factors(w, d, dm, lam), rtol=2e-6, atol=2e-6)


def test_mismatched_lists_are_refused() -> None:
    weights, directions, dims, lambds = _pairs()
    with pytest.raises(ValueError, match="got 4 weights, 3 directions and 4 dims"):
        sharded_dash_factors_many(weights, directions[:3], dims, lambds)
    with pytest.raises(ValueError, match="got 4 weights but 2 lambds"):
        sharded_dash_factors_many(weights, directions, dims, lambds[:2])
    assert sharded_dash_factors_many([], [], [], []) == []


@pytest.fixture(scope="module")
def group() -> Iterator[None]:
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    if dist.is_initialized():
        yield
        return
    with tempfile.NamedTemporaryFile(delete=False) as f:
        init = f"file://{f.name}"
    dist.init_process_group("gloo", init_method=init, rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_dtensor_shards_and_plain_tensors_keep_their_order(group: None) -> None:
    """DTensors (one by one) and plain tensors (grouped) mixed: each factor at its tensor's place."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (1,))
    weights, directions, dims, lambds = _pairs()
    sharded = {0, 1}  # a Conv weight (units within rows) and a bias (one unit across the shards)
    ws = [distribute_tensor(w, mesh, [Shard(0)]) if i in sharded else w for i, w in enumerate(weights)]
    ds = [distribute_tensor(d, mesh, [Shard(0)]) if i in sharded else d for i, d in enumerate(directions)]
    got = sharded_dash_factors_many(ws, ds, dims, lambds)
    assert [is_dtensor(w) for w in ws] == [True, True, False, False]
    for f, w, d, dm, lam in zip(got, weights, directions, dims, lambds, strict=True):
        assert not is_dtensor(f)
        torch.testing.assert_close(f, F.dash_factors(w, d, dm, lam), rtol=2e-6, atol=2e-6)
        assert f.shape == torch.Size(1 if k in dm else s for k, s in enumerate(w.shape))
    assert local_tensor(ws[0]).shape == weights[0].shape
