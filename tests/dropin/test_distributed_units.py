"""Units cut into blocks of dim 0 (nn.MultiheadAttention's q/k/v thirds) under FSDP2: 2 processes, gloo, CPU.

FSDP2 shards every parameter by rows, so the thirds of ``in_proj_bias`` (24 values, 12 per rank)
straddle the shards; each rank must get, for its shard, the factors a single process computes.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

from . import _units_worker

WORLD = 2

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="torch.distributed with gloo is unavailable",
)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("dist_units")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_units_worker.main, args=(r, WORLD, str(tmp / "init"), str(tmp))) for r in range(WORLD)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    for p in procs:
        if p.is_alive():
            p.kill()
    out = [torch.load(Path(tmp) / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for r in out:
        assert "error" not in r, r["error"]
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return out


@pytest.mark.parametrize("granularity", ["kernel", "tensor"])
def test_each_rank_gets_the_single_process_factors_of_its_shard(results: list[dict[str, Any]], granularity: str):
    for rank in results:
        got = rank[granularity]
        assert set(got["local"]) == set(got["reference"])
        assert got["units"]["attn.in_proj_bias"] == 3 and got["sharded"]
        assert got["local"]["attn.in_proj_bias"].shape == (12,)  # this rank's half of the q, k, v biases
        for name, ref in got["reference"].items():
            local = got["local"][name]
            if ref.ndim and ref.shape[0] > 1:  # units along dim 0: this rank's rows
                ref = ref.chunk(WORLD, dim=0)[rank["rank"]]
            torch.testing.assert_close(local, ref, rtol=0, atol=2e-5, msg=f"{granularity} {name}")
